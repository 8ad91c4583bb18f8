"""The document pipeline's pure steps: detect the type, extract the text, cut it into chunks.

Each step is a plain function over the bytes or text it is given (no I/O of its own), with one
error type for "this input cannot be handled": ``UnsupportedContent`` from detection,
``ExtractionError`` from extraction.
"""
