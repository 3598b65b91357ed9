"""Host-neutral building blocks of the labelling tools (Label Studio, FiftyOne, napari, the CLI).

Everything a host adapter needs beyond the model, written once and imported by the adapters
through :mod:`ovsam_core`'s public API (``from ovsam_core import ...``); nothing here imports a
host application.

* pre-labelling and batches: :mod:`.prelabel` (everything / find with a host's labels),
  :mod:`.outputprelabel` (pre-labelling for a host with several outputs), :mod:`.jobs`
  (resumable batches, journal), :mod:`.labelruns` (run records and resume checks);
* labels and names: :mod:`.labelmap`, :mod:`.classnames`, :mod:`.labelchoice`,
  :mod:`.labelprompts` (prompts named with a host's labels), :mod:`.jsonlabels` (labels from
  JSON task data), :mod:`.fewshot`, :mod:`.learner` (a service's few-shot learning from
  annotations), :mod:`.vocab_source`;
* geometry and formats: :mod:`.relative` (relative / percent boxes and points), :mod:`.hostprompts`,
  :mod:`.objectfields` (detection fields), :mod:`.rates` (precision/recall), :mod:`.tiling`;
* interactive annotation (napari): :mod:`.annotator`, :mod:`.labelbook` (objects, one-step undo),
  :mod:`.labelvolume`, :mod:`.labelexport`, :mod:`.planeprompts`, :mod:`.planesource`;
* services and I/O: :mod:`.modelservice` (a service's model, per-item answers, request errors),
  :mod:`.serving` (caches, job queue, metrics), :mod:`.serviceoptions`, :mod:`.cliopts`
  (shared command-line options, options declared on settings fields), :mod:`.wsgiserver`
  (logging, gunicorn), :mod:`.shared`, :mod:`.keywords`, :mod:`.hostinstall`, :mod:`.fetch` and
  :mod:`.safe_download` (image sources with size and SSRF checks), :mod:`.apitoken` and
  :mod:`.hostapi` (a host's API key; downloads from its server and allowed hosts).
"""
