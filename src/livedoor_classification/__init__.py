"""The code that the scripts in src/ share (prepare, train, predict, baseline, aggregate, bench, sweep): modules
with one job each, named for it, so that every import says where its code lives. The README's file map lists
them. Nothing is imported here: a script pays only for the modules it uses (prepare.py never loads torch)."""
