"""HTTP routers of the apiserver, one module per resource."""
