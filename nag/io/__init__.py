"""Files in and out: checkpoints read weights-only (:mod:`nag.io.checkpoints`), one atomic
write for every file nag produces (:mod:`nag.io.atomic`), result rows as CSV/JSON
(:mod:`nag.io.writers`), ``nag export`` (:mod:`nag.io.export`) and fits cached by config
digest (:mod:`nag.io.fit_cache`).

Nothing is imported here, so ``from nag.io.atomic import atomic_write`` stays cheap.
"""
