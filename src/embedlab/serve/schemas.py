"""Request and response bodies (pydantic; they are the OpenAPI schema the tests fuzz).

Inputs use strict types: ``"1"`` is not a token id and ``true`` is not an integer. Request-level limits
that OpenAI answers with 400 (empty list, more than 2,048 inputs, ``dimensions`` out of range) are
checked by the handlers, not here, so that their status is 400 and not 422.
"""

from __future__ import annotations

from typing import Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr

from embedlab.vectors import PRECISIONS

MAX_INPUTS = 2048

EmbeddingInput = Union[StrictStr, list[StrictStr], list[StrictInt], list[list[StrictInt]]]


class _Body(BaseModel):
    model_config = ConfigDict(extra="ignore")  # clients add their own fields (OpenAI's SDK, infinity's clients)


class EmbeddingRequest(_Body):
    input: EmbeddingInput = Field(
        description="a string, a list of strings, a list of token ids, or a list of "
        f"lists of token ids; at most {MAX_INPUTS} inputs"
    )
    model: Optional[StrictStr] = Field(None, description="ignored: the server serves one model (echoed back)")
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: Optional[StrictInt] = Field(
        None, description="Matryoshka truncation (then renormalisation when the model normalises); 1..the model's width"
    )
    user: Optional[StrictStr] = None
    input_type: Optional[StrictStr] = Field(
        None,
        description="embedlab: a named prompt of the model (e.g. query, document); default: the model's default prompt",
    )
    precision: Literal[PRECISIONS] = Field(  # type: ignore[valid-type]
        "float32",
        description="embedlab: float32, float16, int8 (FAISS SQ8 codes as signed bytes, ranges at "
        "/v1/quantization/int8) or binary (sign bits, 8 per byte): embedlab.vectors' precisions",
    )


class EmbeddingItem(BaseModel):
    object: Literal["embedding"] = "embedding"
    index: int
    embedding: Union[list[float], list[int], str]


class Usage(BaseModel):
    prompt_tokens: int
    total_tokens: int
    truncated_inputs: int = Field(0, description="embedlab: inputs cut to --max-input-tokens")


class EmbeddingResponse(BaseModel):
    object: Literal["list"] = "list"
    data: list[EmbeddingItem]
    model: str
    usage: Usage


class EmbedRequest(_Body):
    """TEI's /embed."""

    inputs: Union[StrictStr, list[StrictStr]]
    normalize: StrictBool = True
    truncate: Optional[StrictBool] = Field(None, description="default: the server's --truncate/--no-truncate")
    dimensions: Optional[StrictInt] = None
    prompt_name: Optional[StrictStr] = None


class EmbedSparseRequest(_Body):
    """TEI's /embed_sparse (a sparse model, e.g. SPLADE)."""

    inputs: Union[StrictStr, list[StrictStr]]
    truncate: Optional[StrictBool] = Field(None, description="default: the server's --truncate/--no-truncate")
    prompt_name: Optional[StrictStr] = None


class SparseValue(BaseModel):
    """One non-zero weight: the vocabulary index and its value (TEI's ``SparseValue``)."""

    index: int
    value: float


class SimilarityInputs(BaseModel):
    source_sentence: StrictStr
    sentences: list[StrictStr]


class SimilarityRequest(_Body):
    """TEI's /similarity: cosine of each sentence to the source sentence."""

    inputs: SimilarityInputs
    prompt_name: Optional[StrictStr] = None


class RerankRequest(_Body):
    """TEI's /rerank with an embedder: texts ranked by cosine to the query (query prompt ``query`` and text
    prompt ``document`` when the model defines them)."""

    query: StrictStr
    texts: list[StrictStr]
    top_n: Optional[StrictInt] = Field(None, description="return only the best N (default: all)")
    return_text: StrictBool = False
    return_documents: Optional[StrictBool] = Field(None, description="an alias of return_text (Cohere's name)")
    truncate: Optional[StrictBool] = None


class RerankHit(BaseModel):
    index: int
    score: float
    text: Optional[str] = None


class SearchRequest(_Body):
    query: Union[StrictStr, list[StrictStr]]
    index: Optional[StrictStr] = Field(None, description="the index name; may be left out when one index is loaded")
    k: StrictInt = Field(10, description="hits per query (capped at the index size)")
    rescore: StrictInt = Field(
        4, description="oversampling factor r: rescore k*r candidates with the stored copy (0: off)"
    )
    fusion: Optional[StrictStr] = Field(None, description="a hybrid index: rrf or convex (default: the index's)")
    fusion_weight: Optional[float] = Field(None, description="convex fusion: the dense part's weight, 0 < W < 1")


class SearchHit(BaseModel):
    id: str
    score: float
    text: Optional[str] = None


class SearchResult(BaseModel):
    query: str
    hits: list[SearchHit]


class SearchResponse(BaseModel):
    object: Literal["list"] = "list"
    index: str
    model: str
    data: list[SearchResult]


class TokenizeRequest(_Body):
    inputs: Union[StrictStr, list[StrictStr]]
    add_special_tokens: StrictBool = True
    prompt_name: Optional[StrictStr] = None


class Token(BaseModel):
    id: int
    text: str
    special: bool
    start: Optional[int] = Field(
        None, description="first character of the token in the input text (null for special and prompt tokens)"
    )
    stop: Optional[int] = Field(None, description="one past its last character")


class Int8Ranges(BaseModel):
    dimensions: int
    vmin: list[float]
    vdiff: list[float]
    decode: str


class IndexInfo(BaseModel):
    name: str
    count: int
    codec: str
    dim: int
    has_texts: bool


class ModelInfo(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "embedlab"
    dimensions: int
    max_input_tokens: int
    normalize: bool
    prompts: dict[str, str]
    default_prompt_name: Optional[str] = None
    indexes: list[IndexInfo]


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelInfo]


class Status(BaseModel):
    status: str


class ErrorDetail(BaseModel):
    message: str
    type: str
    param: Optional[str] = None
    code: Optional[str] = None


class ErrorResponse(BaseModel):
    error: ErrorDetail
