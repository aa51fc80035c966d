"""Synthesis flows (Yosys through YoWASP) and measured reports."""
