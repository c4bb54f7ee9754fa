from convoforge.parsing import parse_list


def test_json_object_and_array():
    assert parse_list('{"items": ["Solar power", "Wind farms"]}') == ["Solar power", "Wind farms"]
    assert parse_list('Sure! ["a cat", "a dog"] hope it helps') == ["a cat", "a dog"]


def test_numbered_bullets_headings_and_duplicates():
    text = """Here are 4 subtopics:
1. The impact of technology on society;
2) Quantum computing
- "Quantum computing."
* Smart homes
"""
    assert parse_list(text) == [
        "The impact of technology on society",
        "Quantum computing",
        "Smart homes",
    ]


def test_limit_and_short_items():
    assert parse_list("1. ok\n2. a\n3. fine item\n4. more items", limit=2) == [
        "fine item",
        "more items",
    ]


def test_labels_and_overlong_items():
    text = "Q: What is rain?\nA long explanation that goes on and on and on and on and on\n"
    assert parse_list(text, max_words=8) == ["What is rain?"]
