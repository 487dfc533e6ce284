"""Reply templates: storage now; sandboxed rendering, variables and suggestions come next."""
