"""The versions CI's second environment installs (.ci/lowest.txt) are the lower bounds setup.cfg declares."""
import configparser
import os

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Pinned in .ci/lowest.txt without a bound in setup.cfg: timm needs it and takes the release matching torch.
UNDECLARED = {'torchvision'}


def _lower_bounds():
    cfg = configparser.ConfigParser()
    assert cfg.read(os.path.join(ROOT, 'setup.cfg'))
    bounds = {}
    for line in cfg['options']['install_requires'].splitlines():
        if line.strip():
            req = Requirement(line)
            lows = [s.version for s in req.specifier if s.operator == '>=']
            assert len(lows) == 1, f'setup.cfg: {line.strip()!r} needs one ">=" lower bound for CI to test'
            bounds[canonicalize_name(req.name)] = Version(lows[0])
    return bounds


def _pins():
    pins = {}
    with open(os.path.join(ROOT, '.ci', 'lowest.txt')) as f:
        for line in f:
            line = line.split('#')[0].strip()
            if line:
                req = Requirement(line)
                ops = [(s.operator, s.version) for s in req.specifier]
                assert len(ops) == 1 and ops[0][0] == '==', f'.ci/lowest.txt: {line!r} is not one "name==version" pin'
                pins[canonicalize_name(req.name)] = Version(ops[0][1])
    return pins


def test_lowest_pins_are_setup_cfg_lower_bounds():
    bounds, pins = _lower_bounds(), _pins()
    assert bounds, 'no install_requires read from setup.cfg'
    differ = {name: (f'>={low}', f'=={pins[name]}' if name in pins else 'no pin')
              for name, low in bounds.items() if pins.get(name) != low}
    assert not differ, f'setup.cfg lower bound vs .ci/lowest.txt pin (keep them equal): {differ}'
    extra = set(pins) - set(bounds) - UNDECLARED
    assert not extra, f'.ci/lowest.txt pins packages setup.cfg does not require: {sorted(extra)}'
