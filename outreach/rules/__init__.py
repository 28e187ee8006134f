"""The rules language: loading, schemas, checks and the immutable rule model."""
