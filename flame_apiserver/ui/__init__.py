"""The dashboard's files (package data): the page, its script and style, vendored libraries."""
