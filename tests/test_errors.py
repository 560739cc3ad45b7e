""" Bad input gets a clear error naming what was wrong and what is expected. """
import pytest
import timm
import torch

import m3d_zoo


@pytest.fixture(scope='module')
def m3d():
    return m3d_zoo.create_model('m3d_resnet18', num_classes=0).eval()


def test_not_5d(m3d):
    with pytest.raises(ValueError, match=r'5-D clip batch \(B, 3, T, H, W\), got shape \(3, 8, 32, 16\).*unsqueeze'):
        m3d(torch.randn(3, 8, 32, 16))


def test_channels_in_wrong_dim(m3d):
    with pytest.raises(ValueError, match=r'Expected 3 channels.*\(2, 8, 3, 32, 16\).*permute\(0, 2, 1, 3, 4\)'):
        m3d(torch.randn(2, 8, 3, 32, 16))
    with pytest.raises(ValueError, match='Expected 3 channels'):
        m3d(torch.randn(2, 1, 8, 32, 16))


def test_integer_dtype(m3d):
    with pytest.raises(TypeError, match=r'floating point clip, got dtype torch.uint8.*mean and std'):
        m3d(torch.zeros(2, 3, 8, 32, 16, dtype=torch.uint8))


def test_not_a_tensor(m3d):
    with pytest.raises(TypeError, match='Expected a torch.Tensor'):
        m3d([[1.0]])


def test_clip_length_the_strides_cannot_take(m3d):
    with pytest.raises(ValueError, match=r'T=6 cannot be taken by temporal_strides=\(1, 2, 2, 2\).*multiple of 8'):
        m3d(torch.randn(2, 3, 6, 32, 16))
    keep = m3d_zoo.create_model('m3d_resnet18', num_classes=0, temporal_strides=1).eval()
    with torch.no_grad():
        assert keep(torch.randn(1, 3, 6, 32, 16)).shape == (1, 512)  # any T with strides 1


def test_ral_model_given_another_t():
    model = m3d_zoo.create_model('m3d_ral_resnet18', num_classes=0).eval()
    with pytest.raises(ValueError, match=r'built for num_frames=8 and got T=16.*num_frames=16'):
        model(torch.randn(1, 3, 16, 32, 16))
    two = m3d_zoo.create_model('two_stream_m3d_resnet18', num_classes=0).eval()
    with pytest.raises(ValueError, match='built for num_frames=8'):
        two(torch.randn(1, 3, 16, 32, 16))


def test_unknown_model_name_suggests_near_names():
    with pytest.raises(m3d_zoo.UnknownModelError, match=r"Unknown m3d_zoo model 'm3d_resnet5'.*'m3d_resnet50'"):
        m3d_zoo.create_model('m3d_resnet5')
    with pytest.raises(m3d_zoo.UnknownModelError, match=r"no pretrained tag 'in22k'.*tv_in1k"):
        m3d_zoo.create_model('m3d_resnet50.in22k')
    with pytest.raises(m3d_zoo.UnknownModelError, match='list_models'):
        m3d_zoo.create_model('resnet50')  # timm's 2D model is not a zoo model
    with pytest.raises(RuntimeError, match='Unknown model'):
        timm.create_model('m3d_resnet5')


def test_bad_model_arguments():
    with pytest.raises(ValueError, match=r'num_frames=12 cannot be divided by temporal_strides'):
        m3d_zoo.create_model('m3d_resnet18', num_frames=12)
    with pytest.raises(ValueError, match='m3d_branches applies to M3D'):
        m3d_zoo.create_model('i3d_resnet18', m3d_branches=3)
    with pytest.raises(ValueError, match=r'one value per M3D layer \(5'):
        m3d_zoo.create_model('m3d_resnet18', m3d_branches=(3, 3))
    with pytest.raises(ValueError, match="inflation must be 'center' or 'mean'"):
        m3d_zoo.create_model('m3d_resnet18', inflation='tile')
    with pytest.raises(ValueError, match="Unknown head 'arcface'"):
        m3d_zoo.create_model('m3d_resnet18', head='arcface')
    with pytest.raises(ValueError, match='temporal_strides needs 4 positive integers'):
        m3d_zoo.create_model('m3d_resnet18', temporal_strides=(1, 2))
