# The functions of the project, one binary name per line, read from lambda.json (the one list of
# functions: the template, packaging, the tests and the benchmarks all follow it).
# Sourced; run from the project root.
lambda_functions() {
  python3 -c 'import json; [print(f["binary"]) for f in json.load(open("lambda.json"))["functions"]]'
}
