"""What things are: flow, node and integration definitions; parsing and validation, no I/O."""
