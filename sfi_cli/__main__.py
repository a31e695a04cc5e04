from sfi_cli.cli import main

main()
