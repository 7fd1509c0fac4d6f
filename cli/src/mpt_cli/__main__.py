from mpt_cli.app import main

main()
