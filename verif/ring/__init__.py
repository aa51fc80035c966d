"""cocotb testbenches of the ring interconnect (:mod:`hw.ring`)."""
