"""Reply templates: storage and rights (service), sandboxed rendering (sandbox, context,
greeting), the spelling check, suggestions (ranking, suggestions) and the library (library,
defaults)."""
