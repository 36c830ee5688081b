"""Drives region nodes through scenarios and judges every run.

One simulation core, thin runtimes over it:

| module | what it holds |
| --- | --- |
| `scenario`, `workload`, `plan` | what a run does, fixed by the scenario and the seed |
| `clients` | the client rules (retry, timeout, next region) both runtimes follow |
| `faults` | the fault dispatcher: a fault's start and end as actions, and the timeline |
| `network`, `clock` | the WAN model and region clocks |
| `runtime` | the deterministic runtime (virtual clock, same seed = same digest) |
| `ray/` | the Ray runtime (one actor per region, real processes and kills) |
| `runlog`, `result`, `checkers`, `run` | what a run recorded, the verdicts, `result.json` |
| `report`, `plots`, `compare`, `drill`, `drill_view` | what people read: reports, drills |
"""
