"""Loads the task's documents from the JSON file beside this module (no download, no Hub access)."""

import json
import os


def load_documents(**_: object) -> dict:
    import datasets

    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "counterfactual_occupations.json")
    with open(path, encoding="utf-8") as f:
        documents = json.load(f)["documents"]
    for doc in documents:
        doc["demographic"] = json.dumps(doc["demographic"], sort_keys=True)
    return {"test": datasets.Dataset.from_list(documents)}
