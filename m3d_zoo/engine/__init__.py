""" Training, feature extraction and evaluation engine (one process, or torchrun DDP); `m3d-zoo` builds on it. """
from .checkpoint import (
    Checkpoint, CheckpointError, check_resume_compatible, load_checkpoint, model_from_checkpoint, save_checkpoint)
from .extract import (
    CropOptions, VideoSource, embed_tracklets, evaluate_dataset, evaluate_embeddings_file, extract_dataset,
    extract_embeddings, extract_videos, find_tracklet_folders, load_embeddings, load_inference_model, save_embeddings)
from .match import MatchResult, match_tracks
from .losses import ReidLoss, TripletLoss, batch_hard_triplet_loss
from .plot import MatplotlibMissingError, save_cmc_png, save_training_curves
from .recipes import RECIPES, TrainRecipe, UnknownRecipeError, get_recipe, list_recipes
from .train import TrainingError, build_optimizer, build_scheduler, build_train_loader, seed_everything, train
