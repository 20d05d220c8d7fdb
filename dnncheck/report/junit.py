"""--junit: one <testcase> per check (classname dnncheck, name "<id> <slug>"); fail is a
<failure>, error an <error>, skip <skipped>; warn passes with its summary in <system-out>."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

from dnncheck.results import Status


def junit_xml(result) -> str:
    checks = result.checks
    suite = ET.Element("testsuite", name="dnncheck", tests=str(len(checks)),
                       failures=str(sum(c.status is Status.FAIL for c in checks)),
                       errors=str(sum(c.status is Status.ERROR for c in checks)),
                       skipped=str(sum(c.status is Status.SKIP for c in checks)),
                       time=f"{result.duration_s:.3f}", timestamp=result.started_at or "")
    for c in checks:
        case = ET.SubElement(suite, "testcase", classname="dnncheck", name=f"{c.id} {c.slug}", time=f"{c.duration_s:.3f}")
        details = "\n".join(f"[{f.severity.value}] {f.message}" + (f" (samples: {', '.join(f.samples[:10])})" if f.samples else "")
                            for f in c.findings)
        if c.status is Status.FAIL:
            ET.SubElement(case, "failure", message=c.summary, type="fail").text = details + ("\n" + c.remedy if c.remedy else "")
        elif c.status is Status.ERROR:
            trace = next((f.evidence.get("traceback", "") for f in c.findings if f.evidence.get("traceback")), "")
            ET.SubElement(case, "error", message=c.summary, type="error").text = trace
        elif c.status is Status.SKIP:
            ET.SubElement(case, "skipped", message=c.summary)
        elif c.status is Status.WARN:
            ET.SubElement(case, "system-out").text = f"WARN: {c.summary}\n{details}"
    suites = ET.Element("testsuites", name="dnncheck", tests=suite.get("tests"), failures=suite.get("failures"),
                        errors=suite.get("errors"), skipped=suite.get("skipped"), time=suite.get("time"))
    suites.append(suite)
    ET.indent(suites)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(suites, encoding="unicode") + "\n"


def write_junit(result, path: Path) -> None:
    from dnncheck.outputs import write_text

    write_text(path, junit_xml(result), "JUnit XML")
