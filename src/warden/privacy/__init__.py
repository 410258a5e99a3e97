"""De-identification of tables, text and images before any training job sees them.

Light on import: the NER pipeline and the face model load only when a run asks for them.
"""
