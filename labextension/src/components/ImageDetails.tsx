import type { TranslationBundle } from '@jupyterlab/translation';
import React, { useEffect, useState } from 'react';

import { IImageDetails } from '../galleryModel';
import { PAINT_MAGIC } from '../infotext';
import { IPaintImage } from '../paths';

/** Properties of the selected image's large view. */
export interface IImageDetailsProps {
  /** The image shown. */
  image: IPaintImage;
  /** The URL of the image file. */
  url: string;
  /** The image's generation data, read from its PNG chunks. */
  details: Promise<IImageDetails>;
  /** Whether there is a notebook to insert a cell into. */
  canInsert: boolean;
  /** Strings for the user, translated. */
  trans: TranslationBundle;
  /** Insert the generation data as a `%%paint` cell below the active cell. */
  onInsert: (image: IPaintImage) => void;
  /** Insert a `%%paint --init <file>` cell that starts from the image, with its recipe. */
  onInsertImg2img: (image: IPaintImage) => void;
  /** Copy the generation data to the clipboard. */
  onCopy: (image: IPaintImage) => void;
  /** Open the image in JupyterLab's image viewer. */
  onOpen: (image: IPaintImage) => void;
  /** Delete the image (the handler asks first). */
  onDelete: (image: IPaintImage) => void;
  /** Go back to the thumbnails. */
  onClose: () => void;
}

type State =
  | { kind: 'loading' }
  | { kind: 'ready'; details: IImageDetails }
  | { kind: 'failed'; message: string };

/** The selected image, large, with its parameters and actions. */
export function ImageDetails(props: IImageDetailsProps): JSX.Element {
  const { image, trans } = props;
  const [state, setState] = useState<State>({ kind: 'loading' });
  useEffect(() => {
    let live = true;
    setState({ kind: 'loading' });
    props.details.then(
      details => live && setState({ kind: 'ready', details }),
      error => live && setState({ kind: 'failed', message: String(error?.message ?? error) })
    );
    return () => {
      live = false;
    };
  }, [props.details]);

  const parsed = state.kind === 'ready' ? state.details.parsed : null;
  const hasData = parsed !== null;
  return (
    <div className="jp-sd-details" data-path={image.path}>
      <div className="jp-sd-details-header">
        <span className="jp-sd-details-name" title={image.path}>
          {image.name}
        </span>
        <button
          className="jp-sd-button jp-sd-close"
          title={trans.__('Back to the thumbnails')}
          aria-label={trans.__('Close')}
          onClick={props.onClose}
        >
          ×
        </button>
      </div>
      <img
        className="jp-sd-details-image"
        src={props.url}
        alt={parsed?.prompt ?? image.name}
        onClick={() => props.onOpen(image)}
      />
      <div className="jp-sd-actions">
        <button
          className="jp-sd-button jp-mod-accept"
          disabled={!hasData || !props.canInsert}
          title={
            props.canInsert
              ? trans.__(
                  'Insert a %1 cell that re-runs this image, below the active cell',
                  PAINT_MAGIC
                )
              : trans.__('Open a notebook to insert a cell')
          }
          onClick={() => props.onInsert(image)}
        >
          {trans.__('Insert as %1 cell', PAINT_MAGIC)}
        </button>
        <button
          className="jp-sd-button jp-sd-insert-img2img"
          disabled={!hasData || !props.canInsert}
          title={
            props.canInsert
              ? trans.__('Insert a %1 --init cell that starts from this image', PAINT_MAGIC)
              : trans.__('Open a notebook to insert a cell')
          }
          onClick={() => props.onInsertImg2img(image)}
        >
          {trans.__('Insert as img2img cell')}
        </button>
        <button className="jp-sd-button" disabled={!hasData} onClick={() => props.onCopy(image)}>
          {trans.__('Copy generation data')}
        </button>
        <button className="jp-sd-button" onClick={() => props.onOpen(image)}>
          {trans.__('Open image')}
        </button>
        <button className="jp-sd-button jp-mod-warn" onClick={() => props.onDelete(image)}>
          {trans.__('Delete')}
        </button>
      </div>
      {state.kind === 'loading' && (
        <div className="jp-sd-note">{trans.__('Reading generation data…')}</div>
      )}
      {state.kind === 'failed' && <div className="jp-sd-note jp-sd-error">{state.message}</div>}
      {state.kind === 'ready' && parsed === null && (
        <div className="jp-sd-note">{trans.__('This image has no generation data.')}</div>
      )}
      {parsed !== null && (
        <dl className="jp-sd-params">
          <dt>{trans.__('Prompt')}</dt>
          <dd className="jp-sd-param-prompt">{parsed.prompt}</dd>
          {parsed.negativePrompt && <dt>{trans.__('Negative prompt')}</dt>}
          {parsed.negativePrompt && (
            <dd className="jp-sd-param-negative">{parsed.negativePrompt}</dd>
          )}
          {parsed.params.map((p, i) => (
            <React.Fragment key={`${i}-${p.key}`}>
              <dt>{p.key}</dt>
              <dd data-key={p.key}>{p.value}</dd>
            </React.Fragment>
          ))}
        </dl>
      )}
    </div>
  );
}
