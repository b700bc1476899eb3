"""Recommendations: implicit-ALS factors, request-time fold-in, a FAISS item index.

``artifact.RecModel`` loads a trained model directory, ``foldin.FoldIn`` turns a shopper's recent
interactions into a user vector, ``index.ItemIndex`` finds the items with the largest inner
product with it.  Nothing runs at import time.
"""
