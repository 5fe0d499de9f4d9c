"""The local Kubernetes control plane used by the demo, the e2e tests and the benchmarks.

Everything here runs real upstream binaries built from Go modules (see tools/ and build.py) as local
processes on 127.0.0.1. Nothing in the operator imports this package.
"""
