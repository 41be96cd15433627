"""Tests of mapping's JMESPath layer: the added functions, the compiler, the static checks."""
