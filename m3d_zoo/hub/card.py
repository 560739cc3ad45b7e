""" Model cards: their content from a training run and its evaluation results, and the README.md they become.

This is the one place a card is built: `model_card_for_run` gathers the content (training data and details, metrics
table, evaluation protocol), `generate_model_card` writes it out with huggingface_hub's `ModelCard`, which also writes
(and escapes) the YAML metadata.
"""
import json
from typing import Any, Dict, List, NamedTuple, Optional, Tuple

from ..eval.report import METRIC_LABELS, format_protocol, format_table, results_row
from ..version import __version__
from .constants import HF_ORG, WEIGHTS_NAME
from .errors import HubError

__all__ = ['card_from_results', 'model_card_for_run', 'generate_model_card']

PAPER_TITLE = 'Multi-Scale 3D Convolution Network for Video Based Person Re-Identification'
PAPER_URL = 'https://arxiv.org/abs/1811.07468'
PAPER_CITATION = """@inproceedings{li2019multi,
  title={Multi-Scale 3D Convolution Network for Video Based Person Re-Identification},
  author={Li, Jianing and Zhang, Shiliang and Huang, Tiejun},
  booktitle={Proceedings of the AAAI Conference on Artificial Intelligence},
  volume={33},
  number={01},
  pages={8618--8625},
  year={2019}
}"""

def card_from_results(results: Dict[str, Any], dataset: Optional[str] = None) -> Tuple[Dict[str, Dict], str]:
    """Results of m3d_zoo.eval -> the card's metrics table ({dataset: {column: value}}) and protocol text.

    Args:
        results: One dataset's results (fractions), or ``{dataset: results}``.
        dataset: The name of the dataset of single-dataset results.

    Raises:
        HubError: single-dataset results without `dataset`.
    """
    if any(k in results for k in METRIC_LABELS):
        if not dataset:
            raise HubError('The results file holds the metrics of one dataset without its name: say which dataset it '
                           'is (--dataset MARS, or dataset= in Python) so that the model card can label them.')
        results = {dataset: results}
    metrics = {name: results_row(res) for name, res in results.items()}
    protocol = [f'- {name}: {format_protocol(res)}' for name, res in results.items()]
    return metrics, 'Evaluation protocol (m3d_zoo.eval):\n\n' + '\n'.join(protocol)


def _recipe_details(r: Dict[str, Any], epochs: Optional[int]) -> Dict[str, Any]:
    """The card's training details from a resolved recipe (`TrainRecipe.to_dict()`)."""
    losses = []
    if r.get('ce_weight', 0) > 0:
        losses.append('cross-entropy' + (f' (label smoothing {r["label_smoothing"]})' if r.get('label_smoothing')
                                         else ''))
    if r.get('triplet_weight', 0) > 0:
        losses.append(f'batch-hard triplet (margin {r.get("triplet_margin")})')
    return {
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


def model_card_for_run(
        recipe: Optional[Dict[str, Any]],
        dataset: Optional[str],
        results: Optional[Dict[str, Any]] = None,
        epochs: Optional[int] = None,
        training: Optional[Dict[str, Any]] = None,
) -> Dict[str, Any]:
    """`model_card` content for `m3d_zoo.push_to_hub` / `save_pretrained`: training data and details, metrics.

    Args:
        recipe: The resolved recipe (`TrainRecipe.to_dict()`), or None.
        dataset: Training (and evaluation) dataset name; defaults to the datasets of `results`.
        results: Evaluation results in m3d_zoo.eval's format (fractions), see `card_from_results`, or None.
        epochs: Epochs actually trained.
        training: More training details (``{name: text}``), over those read from the recipe.
    """
    card: Dict[str, Any] = {}
    details = dict(_recipe_details(recipe, epochs) if recipe else {}, **(training or {}))
    if details:
        card['training'] = details
    if results:
        card['metrics'], card['eval_protocol'] = card_from_results(results, dataset)
    datasets = [dataset] if dataset else list(card.get('metrics') or ())
    if datasets:
        card['datasets'] = datasets
    return card


_FAMILIES: List[Tuple[str, str]] = [
    # (architecture prefix, what it is), longest prefixes first; wording after the paper's names for the models
    ('two_stream_m3d', 'the paper\'s full two-stream network: a 2D ResNet spatial stream (frame features averaged '
                       'over time) and an M3D + Residual Attention Layer temporal stream, their embeddings '
                       'concatenated (Eq. 1)'),
    ('m3d_ral_s_', 'an M3D network with Residual Attention Layers using the spatial attention branch only (Table 2 '
                   'ablation)'),
    ('m3d_ral_t_', 'an M3D network with Residual Attention Layers using the temporal attention branch only (Table 2 '
                   'ablation)'),
    ('m3d_ral_c_', 'an M3D network with Residual Attention Layers using the channel attention branch only (Table 2 '
                   'ablation)'),
    ('m3d_ral_', 'an M3D network with Residual Attention Layers (spatial, channel and temporal attention) after '
                 'stages 1-3'),
    ('m3d_', 'an M3D CNN: a 2D ResNet with multi-scale 3D (M3D) layers, parallel dilated temporal convolutions, at '
             'the stem and in the first bottleneck of each stage'),
    ('p3d_a_', 'a P3D-A network: spatial 1x3x3 then temporal 3x1x1 convolutions in series in every block'),
    ('p3d_b_', 'a P3D-B network: spatial and temporal convolutions in parallel in every block'),
    ('p3d_c_', 'a P3D-C network: a temporal convolution added residually after the spatial one in every block'),
    ('i3d_', 'an I3D network: a ResNet with every 3x3 convolution inflated to 3x3x3'),
    ('c2d_', 'a frame-wise 2D ResNet ("2D CNN" in the paper) whose frame embeddings are averaged over time (Eq. 2)'),
]


def _family(architecture: str) -> str:
    for prefix, text in _FAMILIES:
        if architecture.startswith(prefix):
            return text
    return 'a video person re-identification network'


class _Facts(NamedTuple):
    """What the card's sections read from config.json and the `model_card` content."""
    arch: str
    args: Dict[str, Any]
    weights: Dict[str, Any]
    zoo: Dict[str, Any]
    num_frames: int
    height: Optional[int]
    width: Optional[int]
    mean: Tuple[float, ...]
    std: Tuple[float, ...]
    datasets: List[str]
    repo_id: str
    card: Dict[str, Any]
    config: Dict[str, Any]


def _facts(config: Dict[str, Any], card: Dict[str, Any], repo_id: Optional[str]) -> _Facts:
    args = config.get('model_args') or {}
    pcfg = config.get('pretrained_cfg') or {}
    _, height, width = (list(pcfg.get('input_size') or (3, 256, 128)) + [None] * 3)[:3]
    datasets = card.get('datasets') or []
    return _Facts(
        arch=config['architecture'], args=args, weights=config.get('weights') or {}, zoo=config.get('m3d_zoo') or {},
        num_frames=args.get('num_frames', 8), height=height, width=width,
        mean=tuple(pcfg.get('mean') or (0.485, 0.456, 0.406)), std=tuple(pcfg.get('std') or (0.229, 0.224, 0.225)),
        datasets=[datasets] if isinstance(datasets, str) else list(datasets),
        repo_id=repo_id or f'{HF_ORG}/{config["architecture"]}', card=card, config=config)


def _intro(f: _Facts) -> List[str]:
    return [f'# {f.repo_id.split("/")[-1]}', '', f.card.get('description') or (
        f'`{f.arch}` is {_family(f.arch)}, from m3d_zoo, the model zoo of '
        f'*{PAPER_TITLE}* (Li, Zhang and Huang, AAAI 2019). Given a short video clip of one person (a tracklet '
        f'crop), it produces an embedding for video-based person re-identification: matching the same person across '
        f'cameras by comparing embeddings.'), '']


def _model_details(f: _Facts) -> List[str]:
    num_classes = f.config.get('num_classes', f.args.get('num_classes'))
    out = ['## Model details', '',
           f'- **Architecture:** `{f.arch}` (m3d_zoo {f.zoo.get("version", __version__)}, built on timm)']
    if f.zoo.get('num_params'):
        out += [f"- **Parameters:** {f.zoo['num_params'] / 1e6:.2f} M"]
    out += [f"- **Embedding size:** {f.config.get('num_features')} (the output with `num_classes=0`)"]
    if num_classes:
        out += [f'- **Classifier:** {num_classes} training identities (replace it or pass `num_classes=0`)']
    out += [f'- **Frames per clip (T):** {f.num_frames}',
            f"- **Source weights:** {f.zoo.get('source_weights', 'unknown')}"]
    if f.weights.get('sha256'):
        out += [f"- **Weights:** `{f.weights.get('file', WEIGHTS_NAME)}`, sha256 `{f.weights['sha256']}` "
                f"(verified by m3d_zoo on load)"]
    return out + [f'- **Paper:** [{PAPER_TITLE}]({PAPER_URL})',
                  '- **Construction arguments** (`model_args` in config.json, used to rebuild the model):', '',
                  '```json', json.dumps(f.args, indent=2, sort_keys=True), '```', '']


def _input(f: _Facts) -> List[str]:
    out = ['## Input', '',
           f'- A float tensor of shape `(B, 3, T, H, W)` = `(B, 3, {f.num_frames}, {f.height}, {f.width})`: B clips '
           f'of T={f.num_frames} consecutive frames, RGB, each frame resized to {f.height}x{f.width} (height x width).',
           f'- Pixel values scaled to [0, 1], then normalised per channel with the ImageNet mean {f.mean} and '
           f'std {f.std}.',
           '- Output: with `num_classes=0` the embedding `(B, D)`; otherwise classification logits over the '
           'training identities.',
           '- A tracklet of L frames is cut into floor(L/T) clips of T consecutive frames (shorter ones are looped '
           'up to T); the clip embeddings are averaged and tracklets ranked by Euclidean distance, as in the paper.']
    if f.arch.startswith(('m3d_ral', 'two_stream')):
        out += [f'- The temporal attention branch is built for T={f.num_frames}: clips of another length are '
                f'rejected.']
    return out + ['']


def _usage(f: _Facts) -> List[str]:
    return ['## Usage', '', '```python', 'import torch', 'import m3d_zoo', '',
            f'model = m3d_zoo.create_model("hf-hub:{f.repo_id}", pretrained=True, num_classes=0).eval()',
            f'clips = torch.randn(2, 3, {f.num_frames}, {f.height}, {f.width})  # ImageNet-normalised RGB clips',
            'with torch.no_grad():',
            '    embeddings = model(clips)  # (2, D)',
            '```', '',
            'Offline: once downloaded, the model loads from the Hugging Face cache with `HF_HUB_OFFLINE=1`; '
            '`m3d_zoo.create_model("local-dir:/path/to/folder", pretrained=True)` loads a local copy of this repo.',
            '']


def _training_and_evaluation(f: _Facts) -> List[str]:
    training = f.card.get('training') or {}
    out = ['## Training data', '']
    if not (f.datasets or training):
        out += ['These weights were not trained for re-identification by this release: they are the '
                f"initialisation ({f.zoo.get('source_weights', 'unknown')}) or an untrained model. Fine-tune before "
                'use.', '']
    else:
        if f.datasets:
            out += [f"Trained on {', '.join(f.datasets)}.", '']
        out += [f'- **{k}:** {v}' for k, v in training.items()] + ['']
    if f.card.get('metrics'):
        out += ['## Evaluation', '', format_table(f.card['metrics'], 'Dataset'), '']
        if f.card.get('eval_protocol'):
            out += [str(f.card['eval_protocol']), '']
    return out


_USE_AND_RISKS = [
    '## Intended use', '',
    '- Research on video-based person re-identification: reproducing and extending the paper\'s experiments, '
    'benchmarking, and studying temporal modelling.',
    '- A backbone to fine-tune on re-identification data for which the people filmed have given their '
    'consent, or where another lawful basis exists and is documented.', '',
    '## Limitations and risks', '',
    '**Person re-identification is surveillance technology.** Its purpose is to recognise the same person '
    'across cameras and over time, which makes it possible to track individuals, usually without their '
    'knowledge. It can be used to monitor people, to follow them through public spaces, and to chill '
    'lawful activity such as protest, and its errors fall on the people wrongly matched. In many '
    'jurisdictions such processing is regulated (for example as personal or biometric data under the '
    'GDPR, and by the EU AI Act), and some uses are prohibited.',
    '',
    '- Do not use this model to identify, track or profile people without a lawful basis, their informed '
    'consent where required, and meaningful human oversight. It must never be the sole basis of a decision '
    'about a person.',
    '- A match is a similarity score, not an identification: rank lists contain errors and need human '
    'verification.',
    '- Accuracy drops under domain shift: other cameras, viewpoints, resolutions, lighting, crowd density or '
    'clothing changes than in the training data. Benchmark numbers do not transfer to deployments.',
    '- It has not been evaluated for differences in accuracy across demographic groups.',
    '- Public re-identification benchmarks were recorded of people who did not all consent to it; check the '
    'terms and status of any dataset before use (some, e.g. DukeMTMC, have been withdrawn).', '']


def generate_model_card(config: Dict[str, Any], model_card: Optional[Dict[str, Any]] = None,
                        repo_id: Optional[str] = None) -> str:
    """Write a README.md model card for a saved model.

    Args:
        config: The model's config.json content.
        model_card: Optional content, see `save_pretrained`.
        repo_id: The repo, for the usage snippet.

    Returns:
        The card, YAML metadata included.
    """
    from huggingface_hub import ModelCard, ModelCardData
    f = _facts(config, dict(model_card or {}), repo_id)
    tags = f.card.get('tags') or ['video', 'person-reid', 'person-re-identification', 'm3d_zoo', 'timm']
    data = ModelCardData(license=f.card.get('license', 'apache-2.0'), library_name='timm',
                         model_name=f.repo_id.split('/')[-1], tags=tags,
                         datasets=[d.lower() for d in f.datasets] or None)
    out = _intro(f) + _model_details(f) + _input(f) + _usage(f) + _training_and_evaluation(f) + _USE_AND_RISKS
    if f.card.get('notes'):
        out += ['## Notes', '', str(f.card['notes']), '']
    out += ['## Citation', '', '```bibtex', PAPER_CITATION, '```', '']
    # the metadata as huggingface_hub writes it (YAML, escaped), above the body
    return str(ModelCard(f'---\n{data.to_yaml()}\n---\n\n' + '\n'.join(out)))
