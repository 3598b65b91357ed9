"""Section "predictor": ``Predictor.predict`` end to end (upsampling + post-processing), the
no-re-encode check, and the contexts the threads / malloc sections reuse.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Tuple

import numpy as np
import torch

from .measure import Meter, fmt_s, log, log_timing, summarize, time_fn
from .decode import random_boxes


def bench_predictor(args, loaded, image: np.ndarray, clf20k: torch.Tensor, tmp: Path,
                    ctx: Dict[str, Any], full: bool = True) -> Dict[str, Any]:
    from ovsam_core.predictor import Predictor
    from ovsam_core.prompts import Prompt
    from ovsam_core.text.vocab_data import Vocabulary
    from ovsam_core.vocabulary import (TextClassifier, _cache_path, classifier_signature,
                                       load_vocabulary_bundle, save_vocabulary_bundle)
    from safetensors.torch import save_file

    res: Dict[str, Any] = {"image_hw": list(image.shape[:2]), "rows": []}
    pred = Predictor(model=loaded, device="cpu", dtype="fp32", progress=False)
    h, w = image.shape[:2]

    # 3. repeat predict on the same image: the second call must not re-encode
    gen = torch.Generator().manual_seed(3)
    b = random_boxes(1, (h, w), gen)[0].tolist()
    one = [Prompt.from_box(*b)]
    with Meter() as m1:
        pred.predict(image, one)
    calls1 = pred.encoder_calls
    with Meter() as m2:
        pred.predict(image, one)
    calls2 = pred.encoder_calls
    res["repeat_predict"] = {
        "first_call_s": m1.wall, "first_foreign": round(m1.foreign, 3), "encoder_calls_after_first": calls1,
        "second_call_s": m2.wall, "second_foreign": round(m2.foreign, 3), "encoder_calls_after_second": calls2,
        "ok": calls1 == 1 and calls2 == 1,
    }
    log(f"repeat predict: 1st {fmt_s(m1.wall)} (encoder_calls={calls1}), 2nd {fmt_s(m2.wall)} "
        f"(encoder_calls={calls2}) -> {'OK' if calls2 == 1 else 'RE-ENCODED'}")
    emb = pred.embed(image)
    assert pred.encoder_calls == 1
    if not full:  # only set up the predictor for the threads / malloc experiments
        ctx.update(pred=pred, emb=emb)
        return res

    # 20k vocabulary: (a) a `vocab build` folder (read once by Predictor.classifier, again only
    # when its files change), (b) the same classes as a list, served from the classifier cache
    # ($OVSAM_CACHE_DIR).
    names = tuple(f"synthetic class {i:05d}" for i in range(clf20k.shape[0]))
    vocab = Vocabulary("custom", names, tuple(str(i) for i in range(len(names))))
    sig = classifier_signature(vocab, loaded.weights_id)
    bundle = save_vocabulary_bundle(TextClassifier(vocab, clf20k, sig), tmp / "vocab20k")
    cpath = _cache_path(sig, None)
    cpath.parent.mkdir(parents=True, exist_ok=True)
    save_file({"classifier": clf20k.contiguous()}, str(cpath), metadata={"signature": sig})
    r_bundle = time_fn(lambda: load_vocabulary_bundle(bundle), 3)
    log_timing("load_vocabulary_bundle (20k folder; the Predictor reads it once)", r_bundle)
    res["bundle_load_20k"] = r_bundle
    with Meter() as m:
        pred.classifier(list(names))
    res["classifier_first_use_20k_list_s"] = m.wall
    # per-call vocabulary overheads inside predict (done on every call / every chunk of 16)
    from ovsam_core.vocabulary import base_mask_for, load_vocabulary
    lv_vocab = pred.classifier(None).vocabulary
    c20 = pred.classifier(list(names)).vocabulary
    over = {
        "load_vocabulary(list of 20k names) [per call]": lambda: load_vocabulary(list(names)),
        "Predictor.classifier(list of 20k) [per call]": lambda: pred.classifier(list(names)),
        "Predictor.classifier(None = lvis) [per call]": lambda: pred.classifier(None),
        "display_names() 20k [per chunk]": lambda: c20.display_names(),
        "display_names() lvis [per chunk]": lambda: lv_vocab.display_names(),
        "base_mask_for(20k, lvis) [per chunk, fused]": lambda: base_mask_for(c20, "lvis"),
    }
    res["per_call_overheads"] = {}
    for k, fn in over.items():
        r = time_fn(fn, 3)
        log_timing(k, r)
        res["per_call_overheads"][k] = r
    log(f"first use of the 20k list vocabulary (disk cache -> memory): {fmt_s(m.wall)}")

    vocabs = {"lvis": None, "20k-list(cached)": list(names), "20k-folder": str(bundle)}
    for n in args.ns:
        prompts = [Prompt.from_box(*bb) for bb in random_boxes(n, (h, w), gen).tolist()]
        reps = args.decode_repeats if n < 100 else max(2, args.decode_repeats // 2)
        cfgs = [(vname, v, mode) for vname, v in vocabs.items() for mode in ("head", "fused")
                if not (mode == "fused" and vname != "lvis")
                and not (vname == "20k-folder" and n != args.ns[0] and not args.full_vocab_matrix)]
        # interleaved (round-robin over vocabularies/modes) so that differences are not load drift
        for vname, v, mode in cfgs:
            pred.predict(emb, prompts, v, mode=mode)
        runs: Dict[Tuple[str, str], List[Dict[str, float]]] = {(c[0], c[2]): [] for c in cfgs}
        for _ in range(reps):
            for vname, v, mode in cfgs:
                with Meter() as m:
                    pred.predict(emb, prompts, v, mode=mode)
                runs[(vname, mode)].append(m.record())
        for (vname, mode), rr in runs.items():
            r = summarize(rr)
            log_timing(f"Predictor.predict N={n} vocab={vname} mode={mode}", r,
                       f"= {r['median_s'] / n * 1000:.1f} ms/prompt")
            res["rows"].append({"n": n, "vocab": vname, "mode": mode, **r, "interleaved": True,
                                "ms_per_prompt": r["median_s"] / n * 1000})
    res["encoder_calls_at_end"] = pred.encoder_calls
    ctx.update(pred=pred, emb=emb, names=names)
    # post-processing share: time the per-prompt upsample + stats alone at the largest N
    from ovsam_core.preprocess import upsample_masks
    n = max(args.ns)
    boxes_m = emb.frame.to_model(random_boxes(n, (h, w), gen))
    with torch.inference_mode():
        ho = loaded.model.decode(emb.features, boxes=boxes_m)

    def post():
        for j in range(n):
            logit = upsample_masks(ho.mask_logits[j:j + 1].float(), emb.frame)[0]
            mask = (torch.sigmoid(logit) > 0.5).numpy()
            int(mask.sum()), int((logit > 1).sum()), int((logit > -1).sum())
            ys = np.flatnonzero(mask.any(axis=1))
            xs = np.flatnonzero(mask.any(axis=0))
            len(xs), len(ys)
            if mask.any():
                float(logit[torch.from_numpy(mask)].mean())
    r = time_fn(post, 3)
    log_timing(f"post-processing alone (upsample to {h}x{w} + stats, per prompt loop) N={n}", r,
               f"= {r['median_s'] / n * 1000:.1f} ms/prompt")
    res["postprocess_only"] = {"n": n, **r, "ms_per_prompt": r["median_s"] / n * 1000}

    def post_batched():
        lo = upsample_masks(ho.mask_logits.float(), emb.frame)
        mask = lo > 0
        mask.flatten(1).sum(1), (lo > 1).flatten(1).sum(1), (lo > -1).flatten(1).sum(1)
        (lo * mask).flatten(1).sum(1)
        mask.any(dim=1), mask.any(dim=2)
        mask.numpy()
    r = time_fn(post_batched, 3)
    log_timing(f"post-processing prototype, batched over N={n}", r, f"= {r['median_s'] / n * 1000:.1f} ms/prompt")
    res["postprocess_batched_prototype"] = {"n": n, **r, "ms_per_prompt": r["median_s"] / n * 1000}
    return res
