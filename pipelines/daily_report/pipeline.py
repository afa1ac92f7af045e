"""Promoted from notebooks/daily_report.ipynb by ``dbosify promote``: do not edit.

Change the notebook and promote it again: the same notebook and options always give
this same file, so its diff shows what a notebook change does to the pipeline.

Workflows: DailyReport. Activities: top_words.
Serve it:  dbosify worker pipelines/daily_report/pipeline.py
"""


# -- %%workflow cell 1 of 1 (notebook cell 7) -----------------------------------------------------

from collections import Counter
from datetime import timedelta

from dbosify import activity, workflow


@activity.defn
def top_words(text: str, top: int) -> list:
    counts = Counter(text.split())
    ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    return [[word, count] for word, count in ranked[:top]]


@workflow.defn
class DailyReport:
    @workflow.run
    async def run(self, params: dict) -> dict:
        words = await workflow.execute_activity(
            top_words, args=[params["text"], params["top"]],
            start_to_close_timeout=timedelta(seconds=30))
        return {"words": len(params["text"].split()), "top": words}


# -- promotion: fixed when promoted (a run reads its own date from workflow.now()) ----------------

PARAMETERS: dict[str, object] = {
    'text': 'the quick brown fox jumps over the lazy dog and the fox runs',
    'top': 3,
}  # the notebook's `parameters` cell
WORKFLOW: str | None = 'DailyReport'
ARGS: list[object] = [
    {
        'text': 'the quick brown fox jumps over the lazy dog and the fox runs',
        'top': 3,
    },
]
TASK_QUEUE = 'dbosify'
SCHEDULE_ID = 'promoted-daily_report'
SCHEDULE: dict[str, str] | None = {
    'every': '1d',
}
