import type { TranslationBundle } from '@jupyterlab/translation';
import React from 'react';

import { GalleryModel } from '../galleryModel';
import { PAINT_MAGIC } from '../infotext';
import { IPaintImage } from '../paths';
import { ImageDetails } from './ImageDetails';
import { useModelChanged } from './useModel';

/** Properties of the paint gallery. */
export interface IGalleryProps {
  /** The gallery's state: folder, images, selection. */
  model: GalleryModel;
  /** Strings for the user, translated. */
  trans: TranslationBundle;
  /** Whether there is a notebook to insert a cell into. */
  canInsert: boolean;
  /** Insert an image's generation data as a `%%paint` cell. */
  onInsert: (image: IPaintImage) => void;
  /** Insert a `%%paint --init <file>` cell that starts from an image, with its recipe. */
  onInsertImg2img: (image: IPaintImage) => void;
  /** Copy an image's generation data to the clipboard. */
  onCopy: (image: IPaintImage) => void;
  /** Open an image in JupyterLab's image viewer. */
  onOpen: (image: IPaintImage) => void;
  /** Delete an image (the handler asks first). */
  onDelete: (image: IPaintImage) => void;
  /** Let the user pick the folder to show. */
  onPickFolder: () => void;
  /** Go back to the active notebook's folder. */
  onFollowNotebook: () => void;
}

/** Thumbnails of the images in a folder, newest first, and the selected one large. */
export function Gallery(props: IGalleryProps): JSX.Element {
  const { model, trans } = props;
  useModelChanged(model);
  const selected = model.selected;
  const folder = model.folder;
  return (
    <div className="jp-sd-gallery">
      <div className="jp-sd-gallery-header">
        <span className="jp-sd-gallery-title">{trans.__('Paint gallery')}</span>
        <span className="jp-sd-gallery-folder" title={folder ?? ''}>
          {folder === null ? '' : `/${folder}`}
        </span>
        <div className="jp-sd-gallery-tools">
          <button
            className="jp-sd-button"
            title={trans.__('Show another folder')}
            onClick={props.onPickFolder}
          >
            {trans.__('Folder…')}
          </button>
          {model.source === 'picked' && (
            <button
              className="jp-sd-button"
              title={trans.__("Show the active notebook's images")}
              onClick={props.onFollowNotebook}
            >
              {trans.__('Follow notebook')}
            </button>
          )}
          <button
            className="jp-sd-button"
            title={trans.__('Refresh')}
            onClick={() => void model.refresh()}
          >
            ⟳
          </button>
        </div>
      </div>
      {model.error && <div className="jp-sd-note jp-sd-error">{model.error}</div>}
      {selected && (
        <ImageDetails
          image={selected}
          url={model.imageUrl(selected)}
          details={model.details(selected)}
          canInsert={props.canInsert}
          trans={trans}
          onInsert={props.onInsert}
          onInsertImg2img={props.onInsertImg2img}
          onCopy={props.onCopy}
          onOpen={props.onOpen}
          onDelete={props.onDelete}
          onClose={() => model.select(null)}
        />
      )}
      {folder !== null && model.images.length === 0 && !model.error && (
        <div className="jp-sd-note jp-sd-empty">
          {trans.__('No images yet. Run a %1 cell to paint one.', PAINT_MAGIC)}
        </div>
      )}
      <ul className="jp-sd-grid" aria-label={trans.__('Images, newest first')}>
        {model.images.map(image => (
          <li key={image.path}>
            <button
              className={'jp-sd-thumb' + (image.path === selected?.path ? ' jp-mod-selected' : '')}
              title={image.name}
              data-path={image.path}
              aria-pressed={image.path === selected?.path}
              onClick={() => model.select(image.path === selected?.path ? null : image.path)}
              onContextMenu={() => model.select(image.path)}
            >
              <img src={model.imageUrl(image)} alt={image.name} loading="lazy" />
            </button>
          </li>
        ))}
      </ul>
    </div>
  );
}
