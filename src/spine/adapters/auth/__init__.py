"""Key material for JSON Web Tokens: the JWKS source and signing keys."""
