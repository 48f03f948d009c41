"""Wire formats as msgspec Structs: pure data, no behaviour."""
