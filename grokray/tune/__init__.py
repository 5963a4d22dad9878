"""Everything Ray: a study through Ray Tune (``run.run_study``), its trainable (``trainable``),
the Optuna searcher (``search``), the stopper (``stopper``), the MLflow and progress callbacks
(``callbacks``), the child runs they make (``runlog``) through the tracking writer process
(``writer``; these two import no Ray), what a trial reports (``results``), resume (``restore``) and
the study's end (``finish``). The engine (``grokray.engine``) and MLflow (``grokray.tracking``)
know nothing of Ray.
"""
