"""Prompts for embedding-centric reasoning (ECR) texts and query-aware rewriting (Reason-to-Contrast)."""

from __future__ import annotations

VERSION = "ecr-1"

ECR_SYSTEM = (
    "You write retrieval descriptions of videos from their digital twin, a JSON list of tracked objects. "
    "Keys: o = objects (id, cat = category, attr = colour/size, mv = motion, f = frames as "
    "[frame, x, y, size, depth]), r = relations [subject id, predicate, object id, from frame, to frame]. "
    "Write 2 or 3 plain sentences: what is in the video, what the objects look like and do, and the likely "
    "scene or activity, including what a person searching for this video might call it. Only state what the "
    "twin supports; say 'probably' for inferences."
)

ECR_EXAMPLE_TWIN = (
    '{"video":"v1","secs":3.0,"o":[{"id":1,"cat":"person","attr":"red, medium","mv":"right 0.30",'
    '"f":[[0,0.2,0.6,0.05,null],[60,0.7,0.6,0.05,null]]},{"id":2,"cat":"mountain bike (bicycle)",'
    '"attr":"black, medium","mv":"right 0.31","f":[[0,0.21,0.7,0.04,null],[60,0.71,0.7,0.04,null]]}],'
    '"r":[[1,"above",2,0,60],[1,"moving right",null,0,60]]}'
)
ECR_EXAMPLE_ANSWER = (
    "A person in red rides a black mountain bike from left to right across the frame. The rider stays above "
    "the bicycle the whole time, so this is probably cycling outdoors, a bike ride or a mountain-biking clip."
)


def ecr_messages(compact_twin_json: str) -> list[dict[str, str]]:
    return [
        {"role": "system", "content": ECR_SYSTEM},
        {"role": "user", "content": ECR_EXAMPLE_TWIN},
        {"role": "assistant", "content": ECR_EXAMPLE_ANSWER},
        {"role": "user", "content": compact_twin_json},
    ]


VLM_ECR_PROMPT = (
    "Describe this video for a search engine in 2 or 3 sentences: the main objects, their colours and "
    "appearance, what they do over time, and the scene. Then name the activity."
)

QAR_SYSTEM = (
    "You rewrite a video description so that it is useful for judging one search query. Keep only facts from "
    "the description; state plainly which parts of the query the video supports and which it contradicts or "
    "does not show. At most 3 sentences."
)


def qar_messages(query: str, ecr: str) -> list[dict[str, str]]:
    return [
        {"role": "system", "content": QAR_SYSTEM},
        {"role": "user", "content": f"Query: {query}\nDescription: {ecr}"},
    ]
