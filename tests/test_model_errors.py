""" Bad model arguments and clips of another dtype fail at once, with an error naming the argument (or both dtypes)
and what to pass instead, never deep in torch or after building half a model. """
import pytest
import torch

import m3d_zoo
from m3d_zoo.layers.heads import ReidHead
from m3d_zoo.models.two_stream import TwoStreamM3D
from m3d_zoo.models.video_resnet import VideoResNet

CLIP = (1, 3, 8, 32, 16)


# (model, arguments, error type, message): cases that were accepted, or failed inside torch without naming the argument
BAD_ARGS = [
    ('m3d_resnet18', dict(num_classes=-1), ValueError, r'num_classes must be an int >= 0, got -1\.'),
    ('m3d_resnet18', dict(num_classes=2.5), TypeError, r'num_classes must be an int >= 0, got 2\.5 \(float\)\.'),
    ('m3d_resnet18', dict(num_classes='10'), TypeError, r"num_classes .* got '10' \(str\)\. Pass num_classes=10\."),
    ('m3d_resnet18', dict(embed_dim=-5), ValueError, r'embed_dim must be an int >= 1 \(or None .*\), got -5\.'),
    ('m3d_resnet18', dict(embed_dim=0), ValueError, r'embed_dim must be an int >= 1 .*got 0\.'),
    ('m3d_resnet18', dict(head='paper', embed_dim=64.0), TypeError, r'embed_dim .* got 64\.0 \(float\)'),
    ('m3d_resnet18', dict(num_frames='8'), TypeError, r"num_frames must be an int >= 1, got '8' \(str\)\. Pass "
                                                      r'num_frames=8\.'),
    ('m3d_resnet18', dict(num_frames=8.0), TypeError, r'num_frames .* got 8\.0 \(float\)\. Pass num_frames=8\.'),
    ('m3d_resnet18', dict(num_frames=7.5), TypeError, r'num_frames must be an int >= 1, got 7\.5 \(float\)\.$'),
    ('m3d_resnet18', dict(temporal_strides=(1, 2.5, 2, 2)), TypeError,
     r'temporal_strides needs 4 positive integers .*got \(1, 2\.5, 2, 2\)'),
    ('m3d_resnet18', dict(temporal_strides='1222'), TypeError, r"temporal_strides needs 4 .*got '1222'"),
    ('m3d_resnet18', dict(layers=(2, 2)), ValueError, r'layers needs 4 positive integers .*got \(2, 2\)'),
    ('m3d_resnet18', dict(layers=(2, 0, 2, 2)), ValueError, r'layers needs 4 positive integers'),
    ('m3d_resnet18', dict(in_chans=0), ValueError, r'in_chans must be an int >= 1, got 0\.'),
    ('m3d_resnet18', dict(drop_rate=1.5), ValueError, r'drop_rate must be in \[0, 1\) .*got 1\.5'),
    ('m3d_resnet18', dict(drop_rate='0.1'), TypeError, r"drop_rate must be a number in \[0, 1\).*'0\.1' \(str\)"),
    ('m3d_resnet18', dict(temporal_stem='no'), TypeError, r"temporal_stem must be True or False, got 'no'"),
    ('m3d_resnet18', dict(centre_clips=1), TypeError, r'centre_clips must be True or False, got 1'),
    ('c2d_resnet18', dict(centre_clips=True, num_frames=1), ValueError,
     r'centre_clips needs clips of 2 frames or more .*got num_frames=1'),
    ('m3d_resnet18', dict(unit=['2d']), TypeError, r"unit must be a registered unit name .*\['2d'\]"),
    ('m3d_resnet18', dict(block=['basic']), ValueError, r"Unknown block \['basic'\], expected one of"),
    ('m3d_resnet18', dict(last_stride='1'), ValueError, r"last_stride must be 1 or 2, got '1'"),
    ('m3d_ral_resnet18', dict(ral=''), ValueError, r"ral must be None \(no attention\) or a combination .*got ''"),
    ('m3d_resnet18', dict(m3d_branches=2.5), TypeError, r'm3d_branches must be an int or one int per M3D layer'),
    ('m3d_resnet18', dict(m3d_branches=(3, 3, 3, 3, 3)), ValueError,
     r'stage 4 \(T=2: at most 1\): a kernel of dilation i >= T reads only zero padding.*at most \(7, 7, 7, 3, 1\).*'
     r'm3d_branches=\(3, 3, 3, 3, 1\)'),
    ('m3d_resnet18', dict(foo=1), TypeError, r"m3d_resnet18 has no argument 'foo'\. Its model arguments: block, "
                                             r'layers, num_classes'),
    ('two_stream_m3d_resnet18', dict(unit='3d'), TypeError, r'TwoStreamM3D does not take unit: .*create_model'),
    ('two_stream_m3d_resnet18', dict(num_classes=-3), ValueError, r'num_classes must be an int >= 0, got -3\.'),
    ('two_stream_m3d_resnet18', dict(m3d_branches=40), ValueError, r'm3d_branches=40 .*stem \(T=8: at most 7\)'),
    ('two_stream_m3d_resnet18', dict(num_frames='8'), TypeError, r"num_frames must be an int >= 1, got '8'"),
    ('two_stream_m3d_resnet18', dict(bar=2), TypeError, r"two_stream_m3d_resnet18 has no argument 'bar'"),
]


@pytest.mark.parametrize('name, kwargs, error, match', BAD_ARGS,
                         ids=[f'{n}-{"-".join(f"{k}={v!r}" for k, v in kw.items())}' for n, kw, _, _ in BAD_ARGS])
def test_bad_model_argument(name, kwargs, error, match):
    with torch.device('meta'), pytest.raises(error, match=match):
        m3d_zoo.create_model(name, **kwargs)


def test_bad_arguments_fail_before_any_layer_is_built(monkeypatch):
    """The temporal stream's m3d_branches is checked before the two-stream model builds its spatial stream."""
    def no_head(self, *args, **kwargs):
        raise AssertionError('a head was built before the arguments were checked')

    monkeypatch.setattr(ReidHead, '__init__', no_head)
    with torch.device('meta'):
        with pytest.raises(ValueError, match=r'm3d_branches=40'):
            TwoStreamM3D(layers=(2, 2, 2, 2), block='basic', m3d_branches=40)
        with pytest.raises(TypeError, match=r'num_frames must be an int'):
            VideoResNet(num_frames='8')


def test_m3d_branches_limit_is_t_minus_1_per_layer():
    """The most kernels a layer takes is T - 1 for the clip length T it sees (and always 1)."""
    with torch.device('meta'):
        assert m3d_zoo.create_model('m3d_resnet18', m3d_branches=(7, 7, 7, 3, 1)).m3d_branches == (7, 7, 7, 3, 1)
        with pytest.raises(ValueError, match=r'at stem \(T=8: at most 7\):'):
            m3d_zoo.create_model('m3d_resnet18', m3d_branches=(8, 7, 7, 3, 1))
        with pytest.raises(ValueError, match=r'at stage 3 \(T=4: at most 3\):'):
            m3d_zoo.create_model('m3d_resnet18', m3d_branches=(7, 7, 7, 4, 1))
        # at T=1 the one kernel an M3D layer has is allowed (Eq. 6 gives it too)
        assert m3d_zoo.create_model('m3d_resnet18', num_frames=1, temporal_strides=1).m3d_branches == (1,) * 5
        # where every block holds the unit, a stage's later blocks see its output length: stage 3 ends at T=2
        with pytest.raises(ValueError, match=r'at stage 3 \(T=2: at most 1\), stage 4 \(T=1: at most 1\)'):
            m3d_zoo.create_model('p3d_c_resnet18', m3d_branches=(3, 3, 3, 2, 2))
        p3d = m3d_zoo.create_model('p3d_c_resnet18', num_frames=16, m3d_branches=(3, 3, 3, 3, 1))
        assert p3d.m3d_branches == (3, 3, 3, 3, 1)


@pytest.mark.parametrize('kwargs, error, match', [
    (dict(in_chs=0), ValueError, r"in_chs must be an int >= 1 \(the backbone's feature channels\), got 0\."),
    (dict(in_chs=512, num_classes=-2), ValueError, r'num_classes must be an int >= 0 .*got -2\.'),
    (dict(in_chs=512, embed_dim=-1), ValueError, r'embed_dim must be an int >= 1 .*got -1\.'),
    (dict(in_chs=512, drop_rate=-0.1), ValueError, r'drop_rate must be in \[0, 1\)'),
    (dict(in_chs=512, head=None), ValueError, r"Unknown head None, expected 'bnneck' or 'paper'"),
])
def test_bad_head_argument(kwargs, error, match):
    with pytest.raises(error, match=match):
        ReidHead(**kwargs)


def test_reset_classifier_to_a_negative_size():
    model = m3d_zoo.create_model('c2d_resnet18', num_classes=3)
    with pytest.raises(ValueError, match=r'num_classes must be an int >= 0 .*got -1'):
        model.reset_classifier(-1)


# --- clip dtype ----------------------------------------------------------------------------------------------------


@pytest.fixture(scope='module')
def m3d():
    return m3d_zoo.create_model('m3d_resnet18', num_classes=0).eval()


@pytest.mark.parametrize('dtype, hint', [
    (torch.float64, r'x\.to\(torch\.float32\) or model\.to\(torch\.float64\) \(torch\.autocast leaves float64 '
                    r'alone\)\.'),
    (torch.float16, r'x\.to\(torch\.float32\) or model\.to\(torch\.float16\), or run the model under torch\.autocast'),
    (torch.bfloat16, r'x\.to\(torch\.float32\) or model\.to\(torch\.bfloat16\)'),
])
def test_clip_dtype_differs_from_the_weights(m3d, dtype, hint):
    x = torch.randn(CLIP).to(dtype)
    with torch.no_grad(), pytest.raises(TypeError, match=rf"The clip is {dtype} but the model's weights are "
                                                         rf'torch\.float32: convert one to the other, {hint}'):
        m3d(x)


def test_half_model_given_a_float32_clip():
    model = m3d_zoo.create_model('c2d_resnet18', num_classes=0).eval().half()
    with torch.no_grad(), pytest.raises(TypeError, match=r"clip is torch\.float32 but the model's weights are "
                                                         r'torch\.float16: .*x\.to\(torch\.float16\)'):
        model(torch.randn(CLIP))
    two = m3d_zoo.create_model('two_stream_m3d_resnet18', num_classes=0).eval().double()
    with torch.no_grad(), pytest.raises(TypeError, match=r"clip is torch\.float32 but the model's weights are "
                                                         r'torch\.float64'):
        two(torch.randn(CLIP))


def test_matching_dtypes_and_autocast_still_run(m3d):
    # 128x64 frames: on smaller ones a stage's strided 3x3 conv maps 2 columns to 1, and torch's CPU bfloat16 conv
    # for that shape sometimes returns NaN, with the zoo's fast paths off too
    x = torch.randn(1, 3, 8, 128, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ref = m3d(x)
        double = m3d_zoo.create_model('m3d_resnet18', num_classes=0).eval()
        double.load_state_dict(m3d.state_dict())
        torch.testing.assert_close(double.double()(x.double()), ref.double(), rtol=1e-4, atol=1e-4)
        with torch.autocast('cpu', dtype=torch.bfloat16):
            for dtype in (torch.float32, torch.float16, torch.bfloat16):  # autocast casts every one of them
                out = m3d(x.to(dtype))
                assert out.dtype == torch.bfloat16
                torch.testing.assert_close(out.float(), ref, rtol=0.1, atol=0.1)
            # float64 is the one dtype autocast does not cast
            with pytest.raises(TypeError, match=r'clip is torch\.float64 .*autocast leaves float64 alone'):
                m3d(x.double())


@pytest.mark.parametrize('name', ['hf-hub:a/b/c', 'hf-hub:bad name/x', 'hf-hub:org/name@'])
def test_malformed_hub_ids_are_hub_config_errors(name):
    from m3d_zoo.hub import HubConfigError
    with pytest.raises(HubConfigError, match="organisation/name"):
        m3d_zoo.create_model(name, pretrained=True)
