""" From a training run to the Hub: model-card content from a recipe and evaluation results, and the push. """
import json
from pathlib import Path
from typing import Any, Dict, Optional, Tuple, Union

from m3d_zoo.eval.metrics import AP_MODES
from m3d_zoo.models._hub import HubError

__all__ = ['card_from_results', 'model_card_for_run', 'push_checkpoint']

_METRICS = (('mAP', 'mAP'), ('mINP', 'mINP'), ('rank1', 'Rank-1'), ('rank5', 'Rank-5'), ('rank10', 'Rank-10'),
            ('rank20', 'Rank-20'))


def card_from_results(results: Dict[str, Any], dataset: Optional[str] = None) -> Tuple[Dict[str, Dict], str]:
    """Results of m3d_zoo.eval -> the card's metrics table ({dataset: {column: value}}) and protocol text."""
    if any(k in results for k, _ in _METRICS):
        if not dataset:
            raise HubError('The results file holds the metrics of one dataset without its name: say which dataset it '
                           'is (--dataset MARS, or dataset= in Python) so that the model card can label them.')
        results = {dataset: results}
    metrics, protocol = {}, []
    for name, res in results.items():
        row = {}
        for key, column in _METRICS:
            if key in res:
                value = f'{100 * res[key]:.1f}'
                if f'{key}_std' in res:
                    value += f' ± {100 * res[key + "_std"]:.1f}'
                row[f'{column} (%)'] = value
        metrics[name] = row
        parts = [AP_MODES.get(res.get('ap_mode'), res.get('ap_mode') or 'AP formula not recorded')]
        parts.append(f"gallery: {res.get('gallery_mode') or 'as given'}")
        if res.get('metric'):
            parts.append(f"distance: {res['metric']}")
        if res.get('num_splits'):
            parts.append(f"mean ± std over {res['num_splits']} random splits")
        protocol.append(f'- {name}: ' + '; '.join(parts))
    return metrics, 'Evaluation protocol (m3d_zoo.eval):\n\n' + '\n'.join(protocol)


def model_card_for_run(
        recipe: Optional[Dict[str, Any]],
        dataset: Optional[str],
        results: Optional[Dict[str, Any]] = None,
        epochs: Optional[int] = None,
) -> Dict[str, Any]:
    """`model_card` content for `m3d_zoo.push_to_hub` / `save_pretrained`: training details and the metrics table.

    Args:
        recipe: The resolved recipe (`TrainRecipe.to_dict()`), or None.
        dataset: Training (and evaluation) dataset name.
        results: Evaluation results in m3d_zoo.eval's format (fractions), or None.
        epochs: Epochs actually trained.
    """
    card: Dict[str, Any] = {}
    if dataset:
        card['datasets'] = [dataset]
    if recipe:
        r = recipe
        losses = []
        if r.get('ce_weight', 0) > 0:
            losses.append('cross-entropy' + (f' (label smoothing {r["label_smoothing"]})'
                                             if r.get('label_smoothing') else ''))
        if r.get('triplet_weight', 0) > 0:
            losses.append(f'batch-hard triplet (margin {r.get("triplet_margin")})')
        card['training'] = {
            'recipe': r.get('name'), 'epochs': epochs if epochs is not None else r.get('epochs'),
            'loss': ' + '.join(losses),
            'optimizer': f'{r.get("opt")} lr {r.get("lr")} (head x{r.get("head_lr_mult")}), '
                         f'weight decay {r.get("weight_decay")}',
            'lr schedule': f'x{r.get("decay_rate")} at epochs {r.get("decay_epochs")}'
                           + (f', {r["warmup_epochs"]} warm-up epochs' if r.get('warmup_epochs') else ''),
            'batch': (f'{r.get("batch_size")} clips = P {r["batch_size"] // r["num_instances"]} identities x K '
                      f'{r["num_instances"]}' if r.get('sampler') == 'pk' else f'{r.get("batch_size")} random clips'),
            'clips': f'{r.get("num_frames")} {r.get("clip_sampling")} frames at {r.get("input_size")}',
            'augmentation': f'flip {r.get("hflip")}, pad/crop {r.get("pad")}, random erasing {r.get("re_prob")}',
        }
    if results:
        card['metrics'], protocol = card_from_results(results, dataset or 'eval')
        card['eval_protocol'] = (
            protocol + '\n\nEvery tracklet is floor(L/T) clips of T consecutive frames, clip embeddings averaged.')
    return card


def push_checkpoint(
        checkpoint: Union[str, Path],
        repo_id: str,
        results: Optional[Union[str, Path, Dict[str, Any]]] = None,
        dataset: Optional[str] = None,
        drop_classifier: bool = False,
        commit_message: Optional[str] = None,
        revision: Optional[str] = None,
        private: Optional[bool] = None,
):
    """Push a training checkpoint to the Hub (weights, config, model card) through `m3d_zoo.push_to_hub`.

    The recipe and dataset are read from the run's folder (recipe.json) when they are there.

    Returns:
        huggingface_hub's CommitInfo.
    """
    from m3d_zoo.models import push_to_hub
    from .checkpoint import load_checkpoint, model_from_checkpoint
    ckpt = load_checkpoint(checkpoint, with_train_state=False)
    model = model_from_checkpoint(ckpt.path)
    if drop_classifier:
        model.reset_classifier(0)
    model.eval()
    run = {}
    run_path = ckpt.path.parent / 'recipe.json'
    if run_path.is_file():
        run = json.loads(run_path.read_text())
    if isinstance(results, (str, Path)):
        results = json.loads(Path(results).read_text())
    dataset = dataset or ckpt.metadata.get('dataset') or run.get('dataset')
    epochs = int(ckpt.metadata['epoch']) if ckpt.metadata.get('epoch', '').isdigit() else None
    card = model_card_for_run(run.get('recipe'), dataset, results, epochs=epochs)
    return push_to_hub(model, repo_id, commit_message=commit_message or f'Add {ckpt.architecture}',
                       revision=revision, private=private, model_card=card,
                       source_weights=ckpt.metadata.get('source_weights'))
