"""Fixed sentences: calibration (activation scales) and evaluation (accuracy), disjoint.

Written for this project (no data set is downloaded); they mix topics, lengths and punctuation.
"""

#: Sentences the activation scales are calibrated on.
CALIBRATION = (
    "A man is playing a guitar on stage.",
    "The stock market fell sharply on Monday after the announcement.",
    "How do I reset my password?",
    "Cats sleep for most of the day.",
    "I love eating pizza with my friends on Friday nights.",
    "The committee will publish its final report next spring.",
    "Where is the nearest train station?",
    "She painted the old wooden fence bright blue.",
    "Heavy rain is expected across the northern region tomorrow.",
    "The new phone has a larger battery and a faster processor.",
    "He forgot his umbrella at the office again.",
    "Scientists discovered a new species of frog in the rainforest.",
)

#: Sentences the accuracy is measured on (>= 32).
EVALUATION = (
    "The quick brown fox jumps over the lazy dog.",
    "Quantum computers use qubits instead of classical bits.",
    "My flight to Berlin was delayed by three hours.",
    "Photosynthesis converts sunlight into chemical energy.",
    "A young girl is riding a bicycle down the hill.",
    "The central bank raised interest rates by half a percent.",
    "Can you recommend a good book about ancient Rome?",
    "The football match ended in a draw after extra time.",
    "Our team shipped the release two days ahead of schedule.",
    "Fresh bread smells wonderful in the early morning.",
    "The museum is closed on Mondays and public holidays.",
    "He plays the violin in the city orchestra.",
    "Volcanoes release gases and ash into the atmosphere.",
    "Please turn off the lights when you leave the room.",
    "The doctor advised him to drink more water and rest.",
    "Electric cars are becoming cheaper every year.",
    "Two dogs are chasing a ball in the park.",
    "The recipe calls for three eggs and a cup of sugar.",
    "Machine learning models need large amounts of data.",
    "The river flooded the village after the storm.",
    "She won the chess tournament without losing a game.",
    "I can't find my keys anywhere.",
    "The spacecraft entered orbit around Mars last night.",
    "Learning a new language takes patience and practice.",
    "The concert was cancelled because of the weather.",
    "A chef is slicing vegetables in a busy kitchen.",
    "The library offers free courses for adults.",
    "Prices of fruit and vegetables rose again this month.",
    "The children built a sandcastle on the beach.",
    "This laptop overheats when I play games.",
    "The treaty was signed by twelve countries in Geneva.",
    "Honey never spoils if it is stored properly.",
    "What time does the pharmacy open on Sunday?",
    "The old bridge will be replaced by a wider one.",
    "Birds migrate south when the days get shorter.",
    "The software update fixed the bug in the login page.",
)
