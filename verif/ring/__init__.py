"""Verification of the ring interconnect (:mod:`sparsehw.hw.ring`): the traffic harness
(verification IP, :mod:`.harness`), the cocotb testbenches and the perf workload."""
