from dnncheck.cli import main

main()
