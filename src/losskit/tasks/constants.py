"""The thresholds task inference and ``loss_for`` decide by, each with its source."""

#: ``imbalance="auto"`` weighs classes when the largest class count is at least this many
#: times the smallest (3:1 is where class weighting starts to pay off in practice).
IMBALANCE_RATIO_THRESHOLD = 3.0
#: integer targets with more distinct values than this are ambiguous (class ids or counts?)
MANY_CLASSES = 50
#: with ``imbalance="auto"`` no class weights for vocabulary-sized outputs (language modelling)
VOCABULARY_SIZE = 1000
#: a target is an outlier when its modified z-score exceeds 3.5 (Iglewicz and Hoaglin 1993)
OUTLIER_Z = 3.5
#: more than this fraction of outliers counts as heavy tails and switches MSE to Huber
OUTLIER_FRACTION = 0.01
#: Huber's tuning constant: 95% efficiency under Gaussian noise (Huber 1964)
HUBER_K = 1.345
