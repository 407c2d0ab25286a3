"""The runs index: every run (and every tuning trial) as rows of a SQL database, beside its run folder.

``database.py`` opens it (SQLite in WAL mode by default, any SQLAlchemy URL) and migrates it with alembic;
``recorder.py`` writes a run live, ``folders.py`` indexes finished run folders, ``query.py`` answers
``neurotrain runs list --where``.
"""
