""" Video ReID data: datasets (MARS, PRID-2011, iLIDS-VID, generic tracklet folders, synthetic gait), tracker output
and videos cut into tracklets, clip sampling, identity-balanced batches, clip transforms and validation splits. """
from .base import (
    FRAME_DECODERS, DatasetError, Tracklet, VideoReIDDataset, natural_key, read_frame, read_image, verify_images)
from .clip_dataset import (
    CLIP_SAMPLING_MODES, ClipDataset, EvalClipDataset, sample_train_indices, eval_clip_indices, tracklet_labels)
from .dataset_factory import create_dataset, list_datasets
from .folder import load_tracklet_folder
from .ilidsvid import load_ilidsvid
from .mars import MARS_GALLERY_MODES, load_mars
from .prid2011 import load_prid2011
from .samplers import PKBatchSampler, RandomBatchSampler
from .splits import make_random_splits
from .synthetic import make_synthetic_gait
from .tracks import TrackFileError, Tracks, TrackletBoxes, read_tracks, split_tracks, write_tracks
from .video import (
    CROP_MODES, VideoError, VideoInfo, VideoTracklet, crop_box, iter_frames, probe_video, stream_tracklets)
from .transforms import VideoTransform, create_video_transform, resolve_video_data_config
from .validation import hold_out_identities, validation_dataset
