"""Builds tests/data/conversations/: small files in the formats training/conversation_io.py imports, the same bytes
on every run (the results are committed).

    python scripts/build_conversation_samples.py

- messages.jsonl: twenty conversations as Hugging Face chat datasets write them, {"messages": [{role, content}]}
  a line, with five bad records among them (no messages, a tool message, an empty reply, a cut-off line, two user
  turns in a row) at the lines BAD_LINES names.
- messages.parquet: the same twenty as `datasets`' to_parquet writes them: `messages` a list<struct<content: string,
  role: string>> column (the struct's fields in the order the Hub's files have them), a `source` column beside it,
  and the `huggingface` schema metadata. Written by polars, the project's parquet library (pyarrow is not a
  dependency): the column's Arrow and parquet types are the ones pyarrow writes.
- gsm8k.jsonl: twenty grade-school word problems written for this project in GSM8K's format, {"question",
  "answer"}, the answer a worked solution with calculator annotations ("36+28 = <<36+28=64>>64") ending "#### N".
  Each computation is evaluated here, each of its numbers must come from the question or an earlier step, and
  the last step's result must be the N written down for it.
"""

from __future__ import annotations

import ast
import json
import operator
import re
from fractions import Fraction
from pathlib import Path

import polars as pl

OUT = Path(__file__).resolve().parent.parent / "tests" / "data" / "conversations"


def _chat(*texts: str, system: str | None = None) -> list[dict]:
    """user, assistant, user, ... in the content-then-role key order of the Hub's files."""
    messages = [{"content": system, "role": "system"}] if system else []
    return messages + [{"content": t, "role": ("user", "assistant")[i % 2]} for i, t in enumerate(texts)]


CONVERSATIONS = [
    ("everyday", _chat("What is the boiling point of water at sea level?",
                       "100 degrees Celsius, which is 212 degrees Fahrenheit.",
                       system="You are a concise assistant.")),
    ("everyday", _chat("Give me a synonym for 'happy'.", "Cheerful.")),
    ("explain", _chat("What does CPU stand for?", "Central processing unit.", "And GPU?",
                      "Graphics processing unit.")),
    ("everyday", _chat("Translate 'good morning' into French.", "Bonjour.")),
    ("everyday", _chat("How many days are in a leap year?", "366.")),
    ("writing", _chat("Write a haiku about rain.",
                      "Soft rain on the roof\nthe gutters hum a low tune\nthe street shines like glass")),
    ("advice", _chat("I want to learn Python. Where should I start?",
                     "Start with the official tutorial at docs.python.org: it covers variables, loops, functions and "
                     "modules in order.", "How long does that take?",
                     "An hour a day for a few weeks gets most people through the basics.", "Thanks!",
                     "You're welcome. Good luck!")),
    ("everyday", _chat("What is the capital of Australia?", "Canberra.")),
    ("explain", _chat("Explain what a linked list is in one sentence.",
                      "A linked list is a sequence of nodes, each holding a value and a reference to the next node.")),
    ("explain", _chat("Is a tomato a fruit or a vegetable?",
                      "Botanically it is a fruit, since it grows from a flower and holds seeds; in cooking it is "
                      "treated as a vegetable.")),
    ("math", _chat("Name a prime number between 10 and 15.", "11 is one, and 13 is another.",
                   "What about between 20 and 25?")),  # unanswered: the importer drops the last question
    ("code", _chat("How do I reverse a list in Python?",
                   "Use `items.reverse()` to reverse it in place, or `items[::-1]` for a reversed copy.")),
    ("everyday", _chat("What is the chemical symbol for gold?", "Au, from the Latin aurum.")),
    ("writing", _chat("Suggest a name for a grey cat.", "How about Smokey?", "Something more unusual?",
                      "Pewter, or Nimbus.")),
    ("math", _chat("Convert 5 kilometres to metres.", "5 kilometres is 5,000 metres.")),
    ("everyday", _chat("Who wrote 'Pride and Prejudice'?", "Jane Austen; it was published in 1813.")),
    ("code", _chat("What does HTTP status code 404 mean?",
                   "Not Found: the server has nothing at the requested URL.")),
    ("explain", _chat("Summarize the water cycle in two sentences.",
                      "Water evaporates from oceans and lakes, rises, and condenses into clouds. It falls back as "
                      "rain or snow and flows through rivers and the ground back to the sea.")),
    ("math", _chat("What is the square root of 144?", "12.")),
    ("advice", _chat("Can you recommend a board game for four players?",
                     "Ticket to Ride works well with four: it is quick to learn and a game takes about an hour.",
                     "Is it good for kids?", "Yes, its publisher recommends it from age eight.")),
]

BAD_RECORDS = [  # (reason the importer gives, the line)
    ("no messages (nor a question and answer)", json.dumps({"prompt": "Tell me a joke.", "prompt_id": "a1"})),
    ("role 'tool' is not one of system, user, assistant", json.dumps({"messages": [
        {"role": "user", "content": "What's the weather in Paris?"},
        {"role": "assistant", "content": "Let me check."},
        {"role": "tool", "content": '{"temperature": 18}'},
        {"role": "assistant", "content": "It is 18 degrees in Paris."}]})),
    ("empty message", json.dumps({"messages": [{"role": "user", "content": "Hello?"},
                                               {"role": "assistant", "content": ""}]})),
    ("not JSON", '{"messages": [{"role": "user", "content": "a line cut off in the midd'),
    ("turns do not alternate user, assistant", json.dumps({"messages": _chat("Hi.", "Hello!") + [
        {"role": "user", "content": "One question."}, {"role": "user", "content": "And another."},
        {"role": "assistant", "content": "Ask away."}]})),
]
BAD_LINES = (3, 8, 12, 17, 25)  # 1-based lines of messages.jsonl holding BAD_RECORDS, in order

# (question, steps, answer): each {expression} in a step is computed and written as GSM8K writes it; `constants`
# are numbers a step may use that the question gives in words (a percent's 100, "twice")
PROBLEMS = [
    ("A baker makes 36 muffins in the morning and 28 muffins in the afternoon. She sells 45 of them by closing "
     "time. How many muffins are left?",
     ["The baker makes {36+28} muffins in all.", "She has {64-45} muffins left."], 19),
    ("Tomas reads 12 pages of his book every day. The book has 180 pages. After 9 days, how many pages does he "
     "still have to read?", ["In 9 days he reads {12*9} pages.", "He still has {180-108} pages to read."], 72),
    ("A garden has 8 rows of tomato plants with 14 plants in each row. Each plant gives 6 tomatoes. How many "
     "tomatoes does the garden give?",
     ["The garden has {8*14} plants.", "They give {112*6} tomatoes."], 672),
    ("Priya buys 3 notebooks at $4 each and 2 pens at $1.50 each. She pays with a $20 bill. How much change does "
     "she get?", ["The notebooks cost {3*4} dollars.", "The pens cost {2*1.5} dollars.",
                  "She spends {12+3} dollars.", "Her change is {20-15} dollars."], 5),
    ("A tank holds 250 liters of water when full. It already holds 70 liters, and a pump adds 10 liters a "
     "minute. How many minutes does the pump need to fill the tank?",
     ["The tank needs {250-70} more liters.", "The pump needs {180/10} minutes."], 18),
    ("Leo earns $15 an hour and works 6 hours a day, 5 days a week. How much does he earn in 4 weeks?",
     ["He earns {15*6} dollars a day.", "He earns {90*5} dollars a week.", "In 4 weeks he earns {450*4} dollars."],
     1800),
    ("In a class of 30 students, 2/5 of them voted for a rabbit as the class pet, and the rest were split evenly "
     "between a fish and a hamster. How many students voted for the hamster?",
     ["{30*2/5} students voted for the rabbit.", "{30-12} students voted for the fish or the hamster.",
      "{18/2} students voted for the hamster."], 9),
    ("Mia has 3 times as many stickers as Ben. Ben has 24 stickers. Mia gives 20 stickers to her sister. How many "
     "stickers does Mia have now?", ["Mia has {3*24} stickers.", "After giving some away she has {72-20}."], 52),
    ("A farmer packs eggs in cartons of 12. He fills 15 cartons and has 7 eggs left over. How many eggs did he "
     "have?", ["The full cartons hold {12*15} eggs.", "He had {180+7} eggs."], 187),
    ("A rope is 96 meters long. Ana cuts it into pieces of 8 meters each and uses 5 pieces. How many pieces are "
     "left?", ["She cuts {96/8} pieces.", "She has {12-5} pieces left."], 7),
    ("A store sells a jacket for $80. In a sale, its price is cut by 25%. How much does the jacket cost in the "
     "sale?", ["The discount is {80*25/100} dollars.", "The sale price is {80-20} dollars."], 60, (100,)),
    ("Sam runs 3 kilometers on Monday, twice as far on Tuesday, and 4 kilometers less on Wednesday than on "
     "Tuesday. How many kilometers does he run in the three days?",
     ["On Tuesday he runs {3*2} kilometers.", "On Wednesday he runs {6-4} kilometers.",
      "In all he runs {3+6+2} kilometers."], 11, (2,)),
    ("A library has 450 books. 1/3 of them are novels and 1/5 of them are science books. How many books are "
     "neither novels nor science books?",
     ["There are {450/3} novels.", "There are {450/5} science books.", "That leaves {450-150-90} books."], 210),
    ("A box of crayons has 24 crayons. A teacher buys 7 boxes and gives 6 crayons to each of her 25 students. "
     "How many crayons does she have left?",
     ["She buys {24*7} crayons.", "She gives away {6*25} crayons.", "She has {168-150} crayons left."], 18),
    ("A recipe needs 250 grams of flour for 10 cookies. How many grams of flour are needed for 36 cookies?",
     ["Each cookie needs {250/10} grams of flour.", "36 cookies need {25*36} grams."], 900),
    ("Nina saves $35 each month for a bike that costs $420. She already has $70. How many months does she need "
     "to save?", ["She still needs {420-70} dollars.", "That takes {350/35} months."], 10),
    ("A train travels at 90 kilometers per hour for 2 hours, then at 60 kilometers per hour for 3 hours. How "
     "far does it travel in all?",
     ["First it covers {90*2} kilometers.", "Then it covers {60*3} kilometers.",
      "In all it travels {180+180} kilometers."], 360),
    ("There are 5 shelves with 18 jars on each. 27 jars break, and the rest are shared equally among 9 shops. "
     "How many jars does each shop get?",
     ["There are {5*18} jars.", "{90-27} jars are left.", "Each shop gets {63/9} jars."], 7),
    ("Omar is 4 years older than his sister, who is 9. Their father is 3 times Omar's age. How old is their "
     "father?", ["Omar is {9+4} years old.", "Their father is {13*3} years old."], 39),
    ("Lucy buys 15 apples at $0.40 each and pays with a $10 bill. How much change does she get?",
     ["The apples cost {15*0.4} dollars.", "Her change is {10-6} dollars."], 4),
]

OPERATORS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv}
NUMBER = re.compile(r"\d+(?:\.\d+)?")


def evaluate(expression: str) -> Fraction:
    """+ - * / of decimal numbers, exactly; ValueError for anything else."""

    def walk(node: ast.AST) -> Fraction:
        if isinstance(node, ast.BinOp) and type(node.op) in OPERATORS:
            return OPERATORS[type(node.op)](walk(node.left), walk(node.right))
        if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)):
            return Fraction(ast.get_source_segment(expression, node))
        raise ValueError(f"{expression!r}: only + - * / of numbers")

    return walk(ast.parse(expression, mode="eval").body)


def number(value: Fraction) -> str:
    if value.denominator == 1:
        return str(value.numerator)
    text = f"{float(value):g}"
    if Fraction(text) != value:
        raise ValueError(f"{value} has no short decimal form")
    return text


def gsm8k_answer(question: str, steps: list[str], answer: int, constants: tuple = ()) -> str:
    """The worked solution in GSM8K's form; AssertionError if a step uses a number from nowhere or the steps do
    not end at `answer`."""
    known = {Fraction(n) for n in NUMBER.findall(question)} | {Fraction(c) for c in constants}
    lines, last = [], None
    for step in steps:
        def expand(match: re.Match) -> str:
            nonlocal last
            expression = match.group(1)
            unknown = [n for n in NUMBER.findall(expression) if Fraction(n) not in known]
            assert not unknown, f"{question[:40]}...: {expression} uses {unknown}, not given before"
            last = evaluate(expression)
            known.add(last)
            return f"{expression} = <<{expression}={number(last)}>>{number(last)}"

        lines.append(re.sub(r"\{([^{}]+)\}", expand, step))
    assert last == answer, f"{question[:40]}...: the steps end at {last}, not {answer}"
    return "\n".join(lines) + f"\n#### {answer}"


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    good = [json.dumps({"messages": messages}, ensure_ascii=False) for _, messages in CONVERSATIONS]
    for line, (_, bad) in zip(BAD_LINES, BAD_RECORDS):
        good.insert(line - 1, bad)
    (OUT / "messages.jsonl").write_text("\n".join(good) + "\n", encoding="utf-8")

    features = {"messages": [{"content": {"dtype": "string", "_type": "Value"},
                              "role": {"dtype": "string", "_type": "Value"}}],
                "source": {"dtype": "string", "_type": "Value"}}
    frame = pl.DataFrame({"messages": [m for _, m in CONVERSATIONS], "source": [s for s, _ in CONVERSATIONS]},
                         schema={"messages": pl.List(pl.Struct({"content": pl.String, "role": pl.String})),
                                 "source": pl.String})
    frame.write_parquet(OUT / "messages.parquet", compression="snappy",  # `datasets`' (pyarrow's) default
                        metadata={"huggingface": json.dumps({"info": {"features": features}})})

    rows = [{"question": q, "answer": gsm8k_answer(q, steps, answer, *rest)} for q, steps, answer, *rest in PROBLEMS]
    (OUT / "gsm8k.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    for path in sorted(OUT.iterdir()):
        print(f"{path.relative_to(OUT.parent.parent.parent)}: {path.stat().st_size:,} bytes")


if __name__ == "__main__":
    main()
