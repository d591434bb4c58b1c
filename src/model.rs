//! A parsed model: its forward graph (output and loss) and its parameter declarations.

use crate::dsl::{lower, parser};
use crate::error::{Error, Result};
use crate::ir::Diagnostic;
use crate::ir::graph::{Graph, Span};
use crate::ir::init::ParamSpec;
use std::path::Path;

/// A model read from the DSL.
///
/// `graph` has the model's `input`, `target` and `param` declarations as arguments, in source
/// order, and two outputs: the network output (named as in the `output` statement) first, then
/// `loss` (a scalar).
#[derive(Clone, Debug)]
pub struct Model {
    pub name: String,
    /// The file the model came from (`<input>` for source given as a string).
    pub file: String,
    /// The source text, kept so that later stages can point at lines in their errors.
    pub source: String,
    pub graph: Graph,
    /// The name of the network output (`z` in `output z = …`).
    pub output: String,
    pub params: Vec<ParamSpec>,
}

/// The longest model file read: far beyond any model (the shipped ones are a few KiB).
pub const MAX_MODEL_BYTES: u64 = 16 << 20;

impl Model {
    /// Parses and type-checks model source given as a string; errors name it `<input>`.
    ///
    /// ```
    /// use sgn::Model;
    /// use sgn::ir::init::Init;
    ///
    /// let source = "\
    ///     model linear
    ///     input x: f32[B, 3]
    ///     target y: f32[B, 1]
    ///     param w: f32[3, 1] = normal(0.1)
    ///     param b: f32[1]
    ///     output z = x @ w + b
    ///     loss mse(z, y)
    /// ";
    /// let model = Model::parse(source)?;
    /// assert_eq!(model.name, "linear");
    /// let z = model.graph.output("z").expect("the output");
    /// assert_eq!(model.graph.ty(z).to_string(), "f32[B, 1]");
    /// assert_eq!(model.params[0].init, Init::Normal(0.1));
    /// assert_eq!(model.params[1].init, Init::Zeros);
    ///
    /// let err = Model::parse(&source.replace("mse(z, y)", "mse(z, yy)")).unwrap_err();
    /// let text = err.to_string();
    /// let lines: Vec<&str> = text.lines().collect();
    /// assert_eq!(
    ///     lines,
    ///     [
    ///         "<input>:7:17: error: unknown name 'yy'; did you mean 'y'?",
    ///         "7 |     loss mse(z, yy)",
    ///         "  |                 ^",
    ///     ]
    /// );
    /// # Ok::<(), sgn::Error>(())
    /// ```
    pub fn parse(source: &str) -> Result<Model> {
        Model::parse_named("<input>", source)
    }

    /// Parses and type-checks model source; `file` names it in errors (`file:line:col`).
    pub fn parse_named(file: &str, source: &str) -> Result<Model> {
        if source.contains('\r') && !source.contains('\n') {
            // Read as one line, the first comment would swallow the file.
            let span = Span { line: 1, col: 1 };
            let message = "the lines end with CR alone (old Mac text); end them with LF or CR LF";
            let first_line = source.split('\r').next().unwrap_or_default();
            return Err(Diagnostic::new(file, first_line, span, message).into());
        }
        let statements = parser::parse(file, source)?;
        let lowered = lower::lower(&statements, file, source)?;
        Ok(Model {
            name: lowered.name,
            file: file.to_string(),
            source: source.to_string(),
            graph: lowered.graph,
            output: lowered.output,
            params: lowered.params,
        })
    }

    /// Reads, parses and type-checks a model file. A file that is not UTF-8 text is an error
    /// at the first invalid byte; so is anything but a regular file (a device or a pipe would
    /// never end, or never start) or a file past [`MAX_MODEL_BYTES`].
    pub fn from_file(path: impl AsRef<Path>) -> Result<Model> {
        use std::io::{Error as IoError, ErrorKind, Read};
        let path = path.as_ref();
        let refuse = |why: String| Error::io(path, IoError::new(ErrorKind::InvalidInput, why));
        let mut bytes = Vec::new();
        crate::ir::store::open_regular(path)
            .and_then(|file| file.take(MAX_MODEL_BYTES + 1).read_to_end(&mut bytes))
            .map_err(|e| Error::io(path, e))?;
        if bytes.len() as u64 > MAX_MODEL_BYTES {
            return Err(refuse(format!(
                "longer than {} MiB; a model is a short text",
                MAX_MODEL_BYTES >> 20
            )));
        }
        let file = path.display().to_string();
        match std::str::from_utf8(&bytes) {
            Ok(source) => Model::parse_named(&file, source),
            Err(e) => {
                let valid = std::str::from_utf8(&bytes[..e.valid_up_to()])
                    .expect("from_utf8 reports the valid prefix");
                let line = valid.matches('\n').count() + 1;
                let col = valid.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
                let span = Span {
                    line: u32::try_from(line).unwrap_or(u32::MAX),
                    col: u32::try_from(col).unwrap_or(u32::MAX),
                };
                let source = String::from_utf8_lossy(&bytes);
                Err(Diagnostic::new(
                    &file,
                    &source,
                    span,
                    format!(
                        "the file is not UTF-8 text: invalid byte 0x{:02x}; model files must be UTF-8",
                        bytes[e.valid_up_to()]
                    ),
                )
                .into())
            }
        }
    }
}
