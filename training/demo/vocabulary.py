"""Word lists of the demo store: the category tree with price levels, names, brands' syllables."""

from __future__ import annotations

import numpy as np

# top-level category -> sub-category -> (median list price in EUR, product nouns)
TAXONOMY: dict[str, dict[str, tuple[float, tuple[str, ...]]]] = {
    "electronics": {
        "phones": (420.0, ("Smartphone", "Phone")),
        "laptops": (880.0, ("Laptop", "Notebook", "Ultrabook")),
        "headphones": (85.0, ("Headphones", "Earbuds", "Headset")),
        "tablets": (360.0, ("Tablet",)),
        "accessories": (22.0, ("Charger", "Cable", "Case", "Power Bank")),
    },
    "fashion": {
        "shirts": (32.0, ("Shirt", "T-Shirt", "Polo")),
        "shoes": (85.0, ("Sneakers", "Boots", "Loafers")),
        "jackets": (130.0, ("Jacket", "Parka", "Coat")),
        "dresses": (60.0, ("Dress", "Skirt")),
    },
    "home": {
        "kitchen": (40.0, ("Pan", "Knife Set", "Kettle", "Blender")),
        "furniture": (240.0, ("Chair", "Desk", "Shelf", "Sofa")),
        "bedding": (55.0, ("Duvet", "Pillow", "Sheet Set")),
        "lighting": (48.0, ("Lamp", "Ceiling Light", "LED Strip")),
    },
    "beauty": {
        "skincare": (24.0, ("Serum", "Moisturiser", "Cleanser")),
        "makeup": (18.0, ("Lipstick", "Mascara", "Foundation")),
        "fragrance": (65.0, ("Eau de Parfum", "Eau de Toilette")),
    },
    "sports": {
        "fitness": (55.0, ("Dumbbells", "Yoga Mat", "Kettlebell")),
        "cycling": (160.0, ("Helmet", "Bike Light", "Saddle")),
        "running": (90.0, ("Running Shoes", "Running Vest")),
        "outdoor": (110.0, ("Tent", "Backpack", "Sleeping Bag")),
    },
    "toys": {
        "building": (45.0, ("Building Set", "Construction Kit")),
        "games": (32.0, ("Board Game", "Puzzle", "Card Game")),
        "outdoor-play": (60.0, ("Scooter", "Water Blaster", "Kite")),
    },
    "books": {
        "fiction": (14.0, ("Novel", "Thriller", "Short Stories")),
        "non-fiction": (21.0, ("Biography", "Cookbook", "History")),
        "children": (10.0, ("Picture Book", "Story Book")),
        "comics": (13.0, ("Graphic Novel", "Comic")),
    },
    "grocery": {
        "coffee": (12.0, ("Coffee Beans", "Ground Coffee", "Espresso Pods")),
        "snacks": (4.5, ("Chocolate", "Crisps", "Nut Mix")),
        "beverages": (7.0, ("Tea", "Juice", "Sparkling Water")),
    },
}
# Share of browsing demand per top-level category (aligned with TAXONOMY's order).
TOP_DEMAND = np.array([0.20, 0.19, 0.14, 0.10, 0.10, 0.08, 0.11, 0.08])

COLORS = ("black", "white", "grey", "navy", "red", "green", "beige", "blue")
MODELS = ("Pro", "Lite", "Max", "Air", "Classic", "Plus", "Mini", "Eco", "One", "Neo")
SYLLABLES = (
    "vol",
    "tra",
    "nor",
    "dix",
    "ka",
    "lu",
    "mer",
    "zen",
    "ori",
    "bel",
    "sto",
    "fen",
    "qua",
    "ri",
    "tek",
    "vi",
    "sa",
    "mon",
    "ax",
    "ly",
)
MERCHANT_WORDS = (
    "Nordic",
    "Urban",
    "Alpine",
    "Coastal",
    "Bright",
    "Green",
    "Metro",
    "Atlas",
    "Summit",
    "Harbor",
    "Maple",
    "Orbit",
    "Pioneer",
    "Velvet",
    "Iron",
)
MERCHANT_KINDS = ("Goods", "Traders", "Supply", "Outlet", "House", "Market", "Store", "Depot")
LEGAL = {"DE": "GmbH", "FR": "SARL", "NL": "B.V.", "ES": "S.L."}

FIRST_NAMES: dict[str, tuple[str, ...]] = {
    "DE": ("Anna", "Lukas", "Mia", "Jonas", "Lea", "Felix", "Emma", "Paul", "Hannah", "Leon"),
    "FR": ("Louise", "Hugo", "Jade", "Louis", "Chloe", "Gabriel", "Manon", "Arthur", "Lina"),
    "NL": ("Sanne", "Daan", "Fleur", "Sem", "Lotte", "Bram", "Noor", "Thijs", "Eva"),
    "ES": ("Lucia", "Hugo", "Sofia", "Mateo", "Martina", "Pablo", "Carmen", "Alvaro"),
    "BE": ("Elise", "Arne", "Marie", "Noah", "Lore", "Wout", "Julie"),
    "AT": ("Laura", "Tobias", "Sophie", "Maximilian", "Lena", "Elias"),
    "IT": ("Giulia", "Marco", "Chiara", "Luca", "Francesca", "Matteo"),
}
LAST_NAMES: dict[str, tuple[str, ...]] = {
    "DE": ("Mueller", "Schmidt", "Schneider", "Fischer", "Weber", "Meyer", "Wagner", "Becker"),
    "FR": ("Martin", "Bernard", "Dubois", "Thomas", "Robert", "Petit", "Durand", "Leroy"),
    "NL": ("de Jong", "Jansen", "de Vries", "van Dijk", "Bakker", "Visser", "Smit"),
    "ES": ("Garcia", "Fernandez", "Gonzalez", "Rodriguez", "Lopez", "Martinez", "Sanchez"),
    "BE": ("Peeters", "Janssens", "Maes", "Jacobs", "Mertens", "Willems"),
    "AT": ("Gruber", "Huber", "Bauer", "Wagner", "Pichler", "Steiner"),
    "IT": ("Rossi", "Russo", "Ferrari", "Esposito", "Bianchi", "Romano"),
}
DOMAINS = ("mail.example", "post.example", "inbox.example", "web.example")
