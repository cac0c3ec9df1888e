module vmkube/tools/hello

go 1.24.0
