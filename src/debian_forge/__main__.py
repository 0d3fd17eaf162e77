from debian_forge.cli import main

main()
