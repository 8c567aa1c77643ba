"""Text understanding: the all-MiniLM-L6-v2 sentence encoder (`minilm`) and its tokenizer
(`wordpiece`), turning titles, descriptions and reviews into vectors the models share."""
