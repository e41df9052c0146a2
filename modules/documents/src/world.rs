//! The typst world a document is compiled in: one template, the document's data as `data.json`, an
//! optional logo, and the fonts compiled into the binary. Nothing is read from the file system or fetched.

use chrono::{Datelike, NaiveDate};
use typst::diag::{FileError, FileResult};
use typst::foundations::{Bytes, Datetime};
use typst::syntax::{FileId, RootedPath, Source, VirtualPath, VirtualRoot};
use typst::text::{Font, FontBook};
use typst::utils::LazyHash;
use typst::{Library, LibraryExt, World};

use crate::DocumentError;

/// The files a template may read, by the path it reads them under.
pub const DATA_PATH: &str = "data.json";
pub const LOGO_PNG_PATH: &str = "logo.png";
pub const LOGO_SVG_PATH: &str = "logo.svg";
const MAIN_PATH: &str = "main.typ";

const FONT_FILES: [&[u8]; 4] = [
    include_bytes!("../fonts/Inter-Regular.otf"),
    include_bytes!("../fonts/Inter-Italic.otf"),
    include_bytes!("../fonts/Inter-SemiBold.otf"),
    include_bytes!("../fonts/Inter-Bold.otf"),
];

/// What every compilation shares: the standard library and the fonts, parsed once.
pub struct Fonts {
    library: LazyHash<Library>,
    book: LazyHash<FontBook>,
    fonts: Vec<Font>,
}

impl Fonts {
    pub fn load() -> Self {
        let fonts: Vec<Font> = FONT_FILES.iter().flat_map(|data| Font::iter(Bytes::new(*data))).collect();
        Self { library: LazyHash::new(Library::default()), book: LazyHash::new(FontBook::from_fonts(&fonts)), fonts }
    }
}

/// One document's inputs.
pub struct DocumentWorld<'a> {
    pub shared: &'a Fonts,
    pub template: &'a Source,
    pub data: Bytes,
    /// The logo's path (one of the `LOGO_*` paths) and bytes.
    pub logo: Option<(&'static str, Bytes)>,
    /// The date `datetime.today()` gives: the document's own date, so a document renders the same every time.
    pub today: NaiveDate,
}

/// The id of a file at `path` in the project.
pub fn file_id(path: &str) -> Result<FileId, DocumentError> {
    let vpath = VirtualPath::new(path).map_err(|e| DocumentError::Template(format!("path {path}: {e:?}")))?;
    Ok(RootedPath::new(VirtualRoot::Project, vpath).intern())
}

/// The template's source, under the path documents are compiled from.
pub fn template_source(text: String) -> Result<Source, DocumentError> {
    Ok(Source::new(file_id(MAIN_PATH)?, text))
}

impl DocumentWorld<'_> {
    fn is(&self, id: FileId, path: &str) -> bool {
        file_id(path).is_ok_and(|wanted| wanted == id)
    }
}

impl World for DocumentWorld<'_> {
    fn library(&self) -> &LazyHash<Library> {
        &self.shared.library
    }

    fn book(&self) -> &LazyHash<FontBook> {
        &self.shared.book
    }

    fn main(&self) -> FileId {
        self.template.id()
    }

    fn source(&self, id: FileId) -> FileResult<Source> {
        if id == self.template.id() {
            Ok(self.template.clone())
        } else {
            Err(FileError::NotSource)
        }
    }

    fn file(&self, id: FileId) -> FileResult<Bytes> {
        if self.is(id, DATA_PATH) {
            return Ok(self.data.clone());
        }
        match &self.logo {
            Some((path, bytes)) if self.is(id, path) => Ok(bytes.clone()),
            _ => Err(FileError::AccessDenied),
        }
    }

    fn font(&self, index: usize) -> Option<Font> {
        self.shared.fonts.get(index).cloned()
    }

    fn today(&self, _offset: Option<typst::foundations::Duration>) -> Option<Datetime> {
        let day = self.today;
        Datetime::from_ymd(day.year(), u8::try_from(day.month()).ok()?, u8::try_from(day.day()).ok()?)
    }
}
