module vmkube/tools/pause

go 1.24.0
