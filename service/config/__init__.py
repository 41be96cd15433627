"""Configuration: the process settings (environment), the sources file and the provider presets
it names, and the models of a source's door policy, auth schemes and secret references. Built
once at the edge and handed down; every model here is immutable."""
