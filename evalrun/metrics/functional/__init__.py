"""Pure metric math over features/embeddings: no models, no state, float64 where it matters."""
