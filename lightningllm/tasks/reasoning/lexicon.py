"""The words of the reasoning corpus: first names, countable objects and the verbs that add or remove them.

Plain data, written out by hand so the corpus needs no download and no package. The lists are
long on purpose: a model that saw 34 names and 10 verbs learned the template rather than the
question, and failed on a name or verb it had not met. Names come from many cultures and include
long or rare ones that a small BPE vocabulary splits into several pieces, so the model must copy
a name it cannot have memorised as one token. Each verb is written in the three forms the
sentence structures of ``wording.py`` need: third person (``buys``), gerund (``buying``) and
past participle (``bought``). Gain verbs all read naturally with ``more``, ``another`` and
``extra``; loss verbs with ``of them`` and ``of her apples``. That is what lets the structure, not
the verb, tell the operation (``wording.py`` explains the cue words). No word of one list is a
whole word of another entry (``tests/tasks/reasoning/test_corpus.py`` checks), so a held-out
entry can be searched for in the text.
"""

from __future__ import annotations

# (name, subject pronoun)
NAMES: tuple[tuple[str, str], ...] = (
    ("Mia", "She"), ("Liam", "He"), ("Emma", "She"), ("Noah", "He"), ("Olivia", "She"), ("Ethan", "He"),
    ("Ava", "She"), ("Lucas", "He"), ("Sophia", "She"), ("Mason", "He"), ("Isabella", "She"), ("Logan", "He"),
    ("Amelia", "She"), ("James", "He"), ("Harper", "She"), ("Oliver", "He"), ("Ella", "She"), ("Jacob", "He"),
    ("Chloe", "She"), ("Daniel", "He"), ("Grace", "She"), ("Samuel", "He"), ("Lily", "She"), ("Henry", "He"),
    ("Zoe", "She"), ("Omar", "He"), ("Nora", "She"), ("Ravi", "He"), ("Hana", "She"), ("Diego", "He"),
    ("Priya", "She"), ("Kenji", "He"), ("Alice", "She"), ("Felix", "He"), ("Oluwaseun", "He"), ("Bartholomew", "He"),
    ("Xiomara", "She"), ("Chidinma", "She"), ("Adebayo", "He"), ("Ngozi", "She"), ("Chinedu", "He"),
    ("Folake", "She"), ("Kwame", "He"), ("Abena", "She"), ("Kofi", "He"), ("Ama", "She"), ("Yaw", "He"),
    ("Efua", "She"), ("Tendai", "He"), ("Rudo", "She"), ("Tafadzwa", "He"), ("Nyasha", "She"), ("Sipho", "He"),
    ("Thandiwe", "She"), ("Themba", "He"), ("Lerato", "She"), ("Mandla", "He"), ("Nomvula", "She"),
    ("Jabulani", "He"), ("Zanele", "She"), ("Amara", "She"), ("Obinna", "He"), ("Wanjiru", "She"), ("Kamau", "He"),
    ("Achieng", "She"), ("Otieno", "He"), ("Makena", "She"), ("Baraka", "He"), ("Imani", "She"), ("Juma", "He"),
    ("Zawadi", "She"), ("Bakari", "He"), ("Fatima", "She"), ("Youssef", "He"), ("Aisha", "She"), ("Khalid", "He"),
    ("Layla", "She"), ("Tariq", "He"), ("Yasmin", "She"), ("Hamza", "He"), ("Noor", "She"), ("Karim", "He"),
    ("Salma", "She"), ("Mustafa", "He"), ("Zeynep", "She"), ("Emre", "He"), ("Elif", "She"), ("Burak", "He"),
    ("Defne", "She"), ("Mehmet", "He"), ("Shirin", "She"), ("Dariush", "He"), ("Parisa", "She"), ("Kourosh", "He"),
    ("Golnaz", "She"), ("Farhad", "He"), ("Ananya", "She"), ("Arjun", "He"), ("Lakshmi", "She"), ("Vikram", "He"),
    ("Deepika", "She"), ("Rohan", "He"), ("Kavya", "She"), ("Siddharth", "He"), ("Meenakshi", "She"),
    ("Venkatesh", "He"), ("Aishwarya", "She"), ("Raghunathan", "He"), ("Sunita", "She"), ("Harpreet", "He"),
    ("Gurleen", "She"), ("Manpreet", "He"), ("Nasrin", "She"), ("Rahim", "He"), ("Tahmina", "She"), ("Sabbir", "He"),
    ("Dilnoza", "She"), ("Rustam", "He"), ("Mei", "She"), ("Wei", "He"), ("Xiaoling", "She"), ("Zhiwei", "He"),
    ("Jing", "She"), ("Hao", "He"), ("Yuki", "She"), ("Haruto", "He"), ("Sakura", "She"), ("Takeshi", "He"),
    ("Aiko", "She"), ("Hiroshi", "He"), ("Minji", "She"), ("Jisoo", "She"), ("Seojun", "He"), ("Hyunwoo", "He"),
    ("Yuna", "She"), ("Dongmin", "He"), ("Linh", "She"), ("Minh", "He"), ("Thao", "She"), ("Quang", "He"),
    ("Nguyet", "She"), ("Tuan", "He"), ("Siriporn", "She"), ("Somchai", "He"), ("Malai", "She"), ("Anan", "He"),
    ("Dewi", "She"), ("Budi", "He"), ("Ayu", "She"), ("Agus", "He"), ("Maricel", "She"), ("Rodrigo", "He"),
    ("Luzviminda", "She"), ("Emmanuel", "He"), ("Leilani", "She"), ("Keanu", "He"), ("Moana", "She"), ("Tane", "He"),
    ("Aroha", "She"), ("Wiremu", "He"), ("Mateo", "He"), ("Valentina", "She"), ("Santiago", "He"), ("Camila", "She"),
    ("Sebastian", "He"), ("Lucia", "She"), ("Alejandro", "He"), ("Ximena", "She"), ("Joaquin", "He"),
    ("Guadalupe", "She"), ("Fernando", "He"), ("Catalina", "She"), ("Ignacio", "He"), ("Renata", "She"),
    ("Esteban", "He"), ("Paloma", "She"), ("Thiago", "He"), ("Larissa", "She"), ("Gabriel", "He"), ("Beatriz", "She"),
    ("Joao", "He"), ("Mariana", "She"), ("Rafael", "He"), ("Leticia", "She"), ("Vinicius", "He"),
    ("Francesca", "She"), ("Giuseppe", "He"), ("Chiara", "She"), ("Matteo", "He"), ("Giulia", "She"),
    ("Lorenzo", "He"), ("Beatrice", "She"), ("Alessandro", "He"), ("Margherita", "She"), ("Tommaso", "He"),
    ("Amelie", "She"), ("Mathis", "He"), ("Camille", "She"), ("Antoine", "He"), ("Margaux", "She"),
    ("Baptiste", "He"), ("Genevieve", "She"), ("Thibault", "He"), ("Clementine", "She"), ("Guillaume", "He"),
    ("Greta", "She"), ("Lukas", "He"), ("Annika", "She"), ("Maximilian", "He"), ("Friederike", "She"),
    ("Wolfgang", "He"), ("Liesel", "She"), ("Johannes", "He"), ("Ingrid", "She"), ("Sven", "He"), ("Astrid", "She"),
    ("Magnus", "He"), ("Sigrid", "She"), ("Bjorn", "He"), ("Freya", "She"), ("Leif", "He"), ("Saoirse", "She"),
    ("Padraig", "He"), ("Siobhan", "She"), ("Declan", "He"), ("Niamh", "She"), ("Cormac", "He"), ("Eilidh", "She"),
    ("Angus", "He"), ("Morag", "She"), ("Hamish", "He"), ("Rhiannon", "She"), ("Gethin", "He"), ("Agnieszka", "She"),
    ("Krzysztof", "He"), ("Malgorzata", "She"), ("Wojciech", "He"), ("Zofia", "She"), ("Tomasz", "He"),
    ("Katarina", "She"), ("Milos", "He"), ("Jelena", "She"), ("Dragan", "He"), ("Anastasia", "She"), ("Dmitri", "He"),
    ("Svetlana", "She"), ("Vladimir", "He"), ("Ekaterina", "She"), ("Yaroslav", "He"), ("Oksana", "She"),
    ("Bohdan", "He"), ("Nino", "She"), ("Giorgi", "He"), ("Anahit", "She"), ("Tigran", "He"), ("Eleni", "She"),
    ("Dimitris", "He"), ("Theodora", "She"), ("Konstantinos", "He"), ("Ilona", "She"), ("Laszlo", "He"),
    ("Zsofia", "She"), ("Bence", "He"), ("Tereza", "She"), ("Ondrej", "He"), ("Ioana", "She"), ("Andrei", "He"),
    ("Petra", "She"), ("Marek", "He"), ("Miriam", "She"), ("Eliezer", "He"), ("Shoshana", "She"), ("Yitzhak", "He"),
    ("Tamar", "She"), ("Avraham", "He"), ("Dakota", "She"), ("Cheveyo", "He"), ("Winona", "She"), ("Ahanu", "He"),
    ("Nayeli", "She"), ("Takoda", "He"), ("Gwendolyn", "She"), ("Archibald", "He"), ("Penelope", "She"),
    ("Montgomery", "He"), ("Philippa", "She"), ("Cornelius", "He"), ("Wilhelmina", "She"), ("Algernon", "He"),
    ("Josephine", "She"), ("Reginald", "He"), ("Evangeline", "She"), ("Ebenezer", "He"), ("Millicent", "She"),
    ("Percival", "He"), ("Rosalind", "She"), ("Thaddeus", "He"), ("Ophelia", "She"), ("Barnaby", "He"),
    ("Georgiana", "She"), ("Leopold", "He"), ("Abigail", "She"), ("Benjamin", "He"), ("Charlotte", "She"),
    ("Theodore", "He"), ("Madeline", "She"), ("Nathaniel", "He"), ("Savannah", "She"), ("Jeremiah", "He"),
    ("Brooklyn", "She"), ("Dominic", "He"), ("Tiffany", "She"), ("Marcus", "He"), ("Jasmine", "She"),
    ("Tyrone", "He"), ("Keisha", "She"), ("Darnell", "He"), ("Shanice", "She"), ("Jamal", "He"), ("Latoya", "She"),
    ("Malik", "He"), ("Precious", "She"), ("Desmond", "He"), ("Kiri", "She"), ("Rangi", "He"), ("Talia", "She"),
    ("Ezra", "He"), ("Sunniva", "She"), ("Eero", "He"), ("Aino", "She"), ("Jouni", "He"), ("Hilda", "She"),
    ("Ragnar", "He"), ("Solveig", "She"), ("Torvald", "He"), ("Marisol", "She"), ("Armando", "He"),
    ("Yolanda", "She"), ("Rigoberto", "He"), ("Consuelo", "She"), ("Anselmo", "He"), ("Bui", "He"), ("Oanh", "She"),
    ("Kalani", "She"), ("Makoa", "He"), ("Inti", "He"), ("Killa", "She"), ("Amaru", "He"), ("Yupanqui", "He"),
    ("Sumaq", "She"), ("Nayra", "She"), ("Ayelen", "She"), ("Lautaro", "He"), ("Nahuel", "He"), ("Antu", "She"),
    ("Ifeoluwa", "She"), ("Oluwadamilare", "He"), ("Temitope", "She"), ("Babatunde", "He"), ("Yetunde", "She"),
    ("Olumide", "He"), ("Nkechi", "She"), ("Ikechukwu", "He"), ("Mulugeta", "He"), ("Tsehay", "She"), ("Abebe", "He"),
    ("Meskerem", "She"), ("Habib", "He"), ("Samira", "She"), ("Idris", "He"), ("Zainab", "She"), ("Anwar", "He"),
    ("Rania", "She"),
)  # fmt: skip

# (singular, plural) of things that can be counted, bought, found and given away.
OBJECTS: tuple[tuple[str, str], ...] = (
    ("apple", "apples"), ("marble", "marbles"), ("sticker", "stickers"), ("coin", "coins"), ("book", "books"),
    ("pencil", "pencils"), ("cookie", "cookies"), ("balloon", "balloons"), ("seashell", "seashells"),
    ("stamp", "stamps"), ("playing card", "playing cards"), ("crayon", "crayons"), ("toy car", "toy cars"),
    ("button", "buttons"), ("bead", "beads"), ("wooden block", "wooden blocks"), ("candle", "candles"),
    ("cupcake", "cupcakes"), ("eraser", "erasers"), ("feather", "feathers"), ("flower", "flowers"), ("key", "keys"),
    ("orange", "oranges"), ("pebble", "pebbles"), ("ribbon", "ribbons"), ("ticket", "tickets"),
    ("cherry", "cherries"), ("mango", "mangoes"), ("puzzle", "puzzles"), ("bottle", "bottles"), ("peach", "peaches"),
    ("banana", "bananas"), ("lemon", "lemons"), ("plum", "plums"), ("pear", "pears"), ("apricot", "apricots"),
    ("strawberry", "strawberries"), ("grape", "grapes"), ("walnut", "walnuts"), ("chestnut", "chestnuts"),
    ("acorn", "acorns"), ("pine cone", "pine cones"), ("potato", "potatoes"), ("tomato", "tomatoes"),
    ("carrot", "carrots"), ("onion", "onions"), ("cucumber", "cucumbers"), ("pumpkin", "pumpkins"), ("egg", "eggs"),
    ("muffin", "muffins"), ("pretzel", "pretzels"), ("doughnut", "doughnuts"), ("sandwich", "sandwiches"),
    ("dumpling", "dumplings"), ("pancake", "pancakes"), ("waffle", "waffles"), ("biscuit", "biscuits"),
    ("lollipop", "lollipops"), ("candy bar", "candy bars"), ("jelly bean", "jelly beans"),
    ("chocolate", "chocolates"), ("tangerine", "tangerines"), ("coconut", "coconuts"), ("pineapple", "pineapples"),
    ("kiwi", "kiwis"), ("avocado", "avocados"), ("radish", "radishes"), ("turnip", "turnips"),
    ("notebook", "notebooks"), ("marker", "markers"), ("paintbrush", "paintbrushes"), ("ruler", "rulers"),
    ("paper clip", "paper clips"), ("thumbtack", "thumbtacks"), ("envelope", "envelopes"), ("postcard", "postcards"),
    ("magazine", "magazines"), ("comic", "comics"), ("map", "maps"), ("poster", "posters"), ("photo", "photos"),
    ("drawing", "drawings"), ("calendar", "calendars"), ("diary", "diaries"), ("sketchbook", "sketchbooks"),
    ("glue stick", "glue sticks"), ("sharpener", "sharpeners"), ("folder", "folders"), ("stapler", "staplers"),
    ("highlighter", "highlighters"), ("teddy bear", "teddy bears"), ("doll", "dolls"), ("kite", "kites"),
    ("yo-yo", "yo-yos"), ("spinning top", "spinning tops"), ("rubber duck", "rubber ducks"),
    ("toy train", "toy trains"), ("toy robot", "toy robots"), ("action figure", "action figures"),
    ("board game", "board games"), ("jigsaw piece", "jigsaw pieces"), ("domino", "dominoes"), ("dice", "dice"),
    ("chess piece", "chess pieces"), ("tennis ball", "tennis balls"), ("football", "footballs"),
    ("frisbee", "frisbees"), ("skipping rope", "skipping ropes"), ("hula hoop", "hula hoops"),
    ("badminton racket", "badminton rackets"), ("hockey stick", "hockey sticks"), ("baseball cap", "baseball caps"),
    ("scarf", "scarves"), ("glove", "gloves"), ("sock", "socks"), ("hat", "hats"), ("sweater", "sweaters"),
    ("necktie", "neckties"), ("belt", "belts"), ("bracelet", "bracelets"), ("necklace", "necklaces"),
    ("earring", "earrings"), ("hairpin", "hairpins"), ("hair clip", "hair clips"), ("wristwatch", "wristwatches"),
    ("umbrella", "umbrellas"), ("backpack", "backpacks"), ("suitcase", "suitcases"), ("wallet", "wallets"),
    ("purse", "purses"), ("keychain", "keychains"), ("spoon", "spoons"), ("fork", "forks"), ("knife", "knives"),
    ("plate", "plates"), ("bowl", "bowls"), ("cup", "cups"), ("mug", "mugs"), ("teapot", "teapots"),
    ("saucepan", "saucepans"), ("napkin", "napkins"), ("towel", "towels"), ("pillow", "pillows"),
    ("blanket", "blankets"), ("lamp", "lamps"), ("light bulb", "light bulbs"), ("battery", "batteries"),
    ("flashlight", "flashlights"), ("screwdriver", "screwdrivers"), ("hammer", "hammers"), ("nail", "nails"),
    ("screw", "screws"), ("bolt", "bolts"), ("brick", "bricks"), ("plank", "planks"), ("flowerpot", "flowerpots"),
    ("watering can", "watering cans"), ("seed packet", "seed packets"), ("sunflower", "sunflowers"),
    ("tulip", "tulips"), ("daisy", "daisies"), ("seed pod", "seed pods"), ("cactus", "cacti"),
    ("maple leaf", "maple leaves"), ("twig", "twigs"), ("stone", "stones"), ("crystal", "crystals"),
    ("fossil", "fossils"), ("gemstone", "gemstones"), ("starfish", "starfish"), ("sand dollar", "sand dollars"),
    ("goldfish", "goldfish"), ("chick", "chicks"), ("duckling", "ducklings"), ("kitten", "kittens"),
    ("puppy", "puppies"), ("hamster", "hamsters"), ("rabbit", "rabbits"), ("sheep", "sheep"), ("cow", "cows"),
    ("goat", "goats"), ("pony", "ponies"), ("butterfly", "butterflies"), ("ladybird", "ladybirds"),
    ("snail", "snails"), ("firefly", "fireflies"), ("parrot", "parrots"), ("bicycle", "bicycles"),
    ("scooter", "scooters"), ("skateboard", "skateboards"), ("paper boat", "paper boats"),
    ("paper plane", "paper planes"), ("origami crane", "origami cranes"), ("snowball", "snowballs"),
    ("sandcastle", "sandcastles"), ("drum", "drums"), ("flute", "flutes"), ("whistle", "whistles"),
    ("harmonica", "harmonicas"), ("guitar pick", "guitar picks"), ("violin string", "violin strings"),
    ("song sheet", "song sheets"), ("vinyl record", "vinyl records"), ("video game", "video games"),
    ("headphone set", "headphone sets"), ("phone charger", "phone chargers"), ("memory stick", "memory sticks"),
    ("stuffed owl", "stuffed owls"), ("clay pot", "clay pots"), ("glass jar", "glass jars"), ("tin can", "tin cans"),
    ("cardboard tube", "cardboard tubes"), ("shoelace", "shoelaces"), ("safety pin", "safety pins"),
    ("thimble", "thimbles"), ("spool of thread", "spools of thread"), ("ball of wool", "balls of wool"),
    ("darning needle", "darning needles"), ("patch", "patches"), ("medal", "medals"), ("trophy", "trophies"),
    ("rosette", "rosettes"), ("gold star", "gold stars"), ("lantern", "lanterns"), ("kazoo", "kazoos"),
    ("pinwheel", "pinwheels"), ("bubble wand", "bubble wands"),
)  # fmt: skip

# Verbs of getting, as (third person, gerund, past participle); each reads well before "{n} more",
# "another {n}" and "{n} extra apples", and as "{n} more are <participle> for her".
GAIN_VERBS: tuple[tuple[str, str, str], ...] = (
    ("buys", "buying", "bought"), ("finds", "finding", "found"), ("wins", "winning", "won"),
    ("collects", "collecting", "collected"), ("picks up", "picking up", "picked up"), ("earns", "earning", "earned"),
    ("gathers", "gathering", "gathered"), ("orders", "ordering", "ordered"), ("makes", "making", "made"),
    ("bakes", "baking", "baked"), ("crafts", "crafting", "crafted"), ("builds", "building", "built"),
    ("prints", "printing", "printed"), ("brings home", "bringing home", "brought home"),
    ("digs up", "digging up", "dug up"), ("discovers", "discovering", "discovered"),
    ("borrows", "borrowing", "borrowed"), ("rescues", "rescuing", "rescued"),
    ("purchases", "purchasing", "purchased"), ("acquires", "acquiring", "acquired"),
    ("obtains", "obtaining", "obtained"), ("grabs", "grabbing", "grabbed"), ("fetches", "fetching", "fetched"),
    ("scoops up", "scooping up", "scooped up"), ("catches", "catching", "caught"),
    ("unpacks", "unpacking", "unpacked"), ("harvests", "harvesting", "harvested"), ("grows", "growing", "grown"),
    ("sews", "sewing", "sewn"), ("carves", "carving", "carved"), ("paints", "painting", "painted"),
    ("rounds up", "rounding up", "rounded up"), ("inherits", "inheriting", "inherited"),
    ("snaps up", "snapping up", "snapped up"), ("knits", "knitting", "knitted"),
    ("assembles", "assembling", "assembled"), ("fishes out", "fishing out", "fished out"),
    ("saves", "saving", "saved"), ("receives", "receiving", "received"), ("stocks", "stocking", "stocked"),
    ("adopts", "adopting", "adopted"),
)  # fmt: skip

# Verbs of parting with things, as (third person, gerund, past participle); each reads well before
# "{n} of them" and "{n} of her apples", and as "{n} of them are <participle>".
LOSS_VERBS: tuple[tuple[str, str, str], ...] = (
    ("sells", "selling", "sold"), ("loses", "losing", "lost"), ("donates", "donating", "donated"),
    ("eats", "eating", "eaten"), ("breaks", "breaking", "broken"), ("drops", "dropping", "dropped"),
    ("throws out", "throwing out", "thrown out"), ("uses up", "using up", "used up"), ("spends", "spending", "spent"),
    ("trades", "trading", "traded"), ("lends out", "lending out", "lent out"), ("mails", "mailing", "mailed"),
    ("sends off", "sending off", "sent off"), ("returns", "returning", "returned"),
    ("recycles", "recycling", "recycled"), ("discards", "discarding", "discarded"),
    ("misplaces", "misplacing", "misplaced"), ("hands out", "handing out", "handed out"),
    ("burns", "burning", "burned"), ("tears up", "tearing up", "torn up"), ("crushes", "crushing", "crushed"),
    ("spills", "spilling", "spilled"), ("wastes", "wasting", "wasted"), ("pawns", "pawning", "pawned"),
    ("auctions off", "auctioning off", "auctioned off"), ("swaps", "swapping", "swapped"),
    ("delivers", "delivering", "delivered"), ("ships", "shipping", "shipped"),
    ("throws away", "throwing away", "thrown away"), ("packs away", "packing away", "packed away"),
    ("buries", "burying", "buried"), ("cracks", "cracking", "cracked"), ("pops", "popping", "popped"),
    ("shatters", "shattering", "shattered"), ("dumps", "dumping", "dumped"), ("tosses", "tossing", "tossed"),
    ("leaves behind", "leaving behind", "left behind"), ("forgets", "forgetting", "forgotten"),
    ("chews up", "chewing up", "chewed up"), ("sacrifices", "sacrificing", "sacrificed"),
    ("rents out", "renting out", "rented out"), ("smashes", "smashing", "smashed"),
)  # fmt: skip

# Things that happen to some of them, with no doer, as (plural verb, singular verb): "{n} more turn up".
GAIN_EVENTS: tuple[tuple[str, str], ...] = (
    ("turn up", "turns up"), ("show up", "shows up"), ("appear", "appears"), ("come along", "comes along"),
    ("roll in", "rolls in"), ("pour in", "pours in"), ("wash ashore", "washes ashore"),
    ("come in the post", "comes in the post"), ("pop out of a drawer", "pops out of a drawer"),
    ("join the pile", "joins the pile"), ("land on the doorstep", "lands on the doorstep"),
    ("fall out of a cupboard", "falls out of a cupboard"),
)  # fmt: skip

# Things that happen to some of them, with no doer, as (plural verb, singular verb): "{n} of them break".
LOSS_EVENTS: tuple[tuple[str, str], ...] = (
    ("break", "breaks"), ("go missing", "goes missing"), ("roll away", "rolls away"), ("get lost", "gets lost"),
    ("fall apart", "falls apart"), ("disappear", "disappears"), ("go bad", "goes bad"), ("wear out", "wears out"),
    ("blow away", "blows away"), ("fall into the river", "falls into the river"), ("get stolen", "gets stolen"),
    ("vanish", "vanishes"),
)  # fmt: skip

# People near the subject: the other actor of a step ("her cousin buys 4 more for her") and distractors.
RELATIVES: tuple[str, ...] = (
    "friend", "brother", "sister", "mother", "father", "aunt", "uncle", "cousin", "neighbour", "teacher",
    "grandmother", "grandfather", "classmate", "coach",
)  # fmt: skip

# The pieces of made-up names ("Kemavu", "Toriland"): syllables of an onset and a vowel, then a coda. A
# repeated entry is drawn more often. A model that meets a new name in every problem cannot recall it and
# must copy it; the held-out names stay unseen (wording.py).
NAME_ONSETS: tuple[str, ...] = (
    "b", "c", "d", "f", "g", "h", "j", "k", "l", "m", "n", "p", "r", "s", "t", "v", "w", "y", "z",
    "b", "d", "k", "l", "m", "n", "r", "s", "t", "", "", "ch", "sh", "th", "br", "dr", "kr", "tr", "st", "ph",
    "gr", "fl", "zh", "ng", "kw",
)  # fmt: skip
NAME_VOWELS: tuple[str, ...] = (
    "a", "e", "i", "o", "u", "a", "e", "i", "o", "a", "y", "ai", "au", "ea", "ee", "ia", "io", "oa", "ou", "ue",
)  # fmt: skip
NAME_CODAS: tuple[str, ...] = (
    "", "", "", "", "", "", "n", "n", "r", "l", "s", "m", "k", "d", "t", "x", "th", "sh", "nd", "rt", "ld", "ng",
)  # fmt: skip
STEM_CODAS: tuple[str, ...] = (
    "b", "d", "g", "k", "l", "m", "n", "p", "r", "t", "nk", "rk", "lt", "mp", "nd", "rp", "st", "rb", "lk", "ft",
)  # fmt: skip
"""The last consonants of a made-up verb's or object's stem (``florp``: ``florps``, ``florping``, ``florped``;
a ``florp``, two ``florps``)."""
