// Command kubectl is the real kubectl of the pinned Kubernetes release (k8s.io/kubectl, same version as the test
// cluster), built by `make kubectl` for the benchmarks' baseline (bench/scale.py).
package main

import (
	"k8s.io/component-base/cli"
	"k8s.io/kubectl/pkg/cmd"
	"k8s.io/kubectl/pkg/cmd/util"
)

func main() {
	command := cmd.NewDefaultKubectlCommand()
	if err := cli.RunNoErrOutput(command); err != nil {
		util.CheckErr(err)
	}
}
