// Package lambdatest proves that each function's bootstrap runs as Lambda
// runs it. Its tests build every functions/<name> with the Makefile's tags
// and linker flags for this machine (reusing what go test compiled), start
// each binary as a child process against an in-test implementation of the
// Lambda Runtime API, with the environment template.yaml gives the
// function (resources in moto, WeChat played by the sandbox), deliver a
// real event of each trigger type and check the answers, the logs and the
// metrics. BenchmarkInit (make bench) builds them exactly as released and
// measures each binary's size and init time (process start to the first
// invocation/next request) against the targets.
//
// The package has no code outside its tests.
package lambdatest
